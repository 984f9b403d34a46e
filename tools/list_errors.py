"""Every exception and warning the packages raise, read from the source, for docs/errors.md.

Walks reference/ and conformance/ with the ast module and lists each ``raise X(...)`` and
``warnings.warn(...)`` with its module, enclosing function and message template (f-string fields
shown as ``{expression}``). docs/errors.md holds the output between two marker lines, and
tests/test_errors_doc.py fails when the source and the document disagree, so the list stays
complete.

    python tools/list_errors.py           # print the generated section
    python tools/list_errors.py --write   # rewrite it in docs/errors.md
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reference", "conformance")
DOC = ROOT / "docs" / "errors.md"
BEGIN = "<!-- BEGIN GENERATED: python tools/list_errors.py --write -->"
END = "<!-- END GENERATED -->"


def message_template(node):
    """The message argument as text: literal parts kept, f-string fields as {expr}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"
            for part in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return (
            message_template(node.left)
            + ("" if isinstance(node.op, ast.Add) else " % ...")
            + (message_template(node.right) if isinstance(node.op, ast.Add) else "")
        )
    if isinstance(node, ast.Subscript):  # a message cut to length: "..."[:300]
        return message_template(node.value)
    return "{" + ast.unparse(node) + "}"


class Finder(ast.NodeVisitor):
    """Collects (where, type, message) for each raise and warnings.warn, where =
    module.Class.function."""

    def __init__(self, module):
        self.module, self.scope, self.rows = module, [], []

    def _scoped(self, node):
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def _add(self, kind, args):
        self.rows.append(
            (".".join([self.module, *self.scope]), kind, message_template(args[0]) if args else "")
        )

    def visit_Raise(self, node):
        if isinstance(node.exc, ast.Call):  # a bare ``raise`` re-raises something already listed
            self._add(ast.unparse(node.exc.func), node.exc.args)
        self.generic_visit(node)

    def visit_Call(self, node):
        if ast.unparse(node.func) == "warnings.warn":
            self._add("warning", node.args)
        self.generic_visit(node)


def find(path, module):
    finder = Finder(module)
    finder.visit(ast.parse(path.read_text(encoding="utf-8")))
    return finder.rows


def all_rows():
    rows = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(
                ".__init__"
            )
            rows.extend(find(path, module))
    return rows


def escape(text):
    return text.replace("|", "\\|").replace("\n", " ")


def render():
    lines = [BEGIN, ""]
    module = None
    for where, kind, message in all_rows():
        top = where.split(".")[0] + "." + where.split(".")[1] if where.count(".") else where
        if top != module:
            module = top
            lines += ["", f"### `{module}`", "", "| raised in | type | message |", "|---|---|---|"]
        lines.append(f"| `{where}` | {kind} | {escape(message)} |")
    return "\n".join(lines + ["", END])


def current_doc_section():
    text = DOC.read_text(encoding="utf-8")
    return text[text.index(BEGIN) : text.index(END) + len(END)]


def main(argv):
    section = render()
    if "--write" in argv:
        text = DOC.read_text(encoding="utf-8")
        DOC.write_text(text.replace(current_doc_section(), section), encoding="utf-8")
    else:
        print(section)


if __name__ == "__main__":
    main(sys.argv[1:])
