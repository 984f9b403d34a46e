"""A readable NumPy reference of MPNet and MPT as implemented by Hugging Face transformers 4.37.2
(and MosaicML llm-foundry)."""

from .checkpoint import CheckpointError
from .constraints import Constraint, DisjunctiveConstraint, PhrasalConstraint
from .loading import build, from_pretrained
from .mask_filling import fill_mask
from .mpnet_model import (
    MPNetConfig,
    MPNetForMaskedLM,
    MPNetForMultipleChoice,
    MPNetForQuestionAnswering,
    MPNetForSequenceClassification,
    MPNetForTokenClassification,
    MPNetModel,
)
from .mpt_model import (
    MPTConfig,
    MPTForCausalLM,
    MPTForQuestionAnswering,
    MPTForSequenceClassification,
    MPTForTokenClassification,
    MPTModel,
)
from .profiles import MPNET_PROFILES, MPT_PROFILES, get_profile
from .question_answering import answer_question
from .streaming import TextStreamer
from .text_classification import classify_text
from .text_generation import generate_text
from .token_classification import find_entities
from .tokenizer import Tokenizer
from .zero_shot_classification import classify_zero_shot

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Constraint",
    "PhrasalConstraint",
    "DisjunctiveConstraint",
    "build",
    "from_pretrained",
    "MPNetConfig",
    "MPNetModel",
    "MPNetForMaskedLM",
    "MPNetForSequenceClassification",
    "MPNetForMultipleChoice",
    "MPNetForTokenClassification",
    "MPNetForQuestionAnswering",
    "MPTConfig",
    "MPTModel",
    "MPTForCausalLM",
    "MPTForSequenceClassification",
    "MPTForTokenClassification",
    "MPTForQuestionAnswering",
    "MPNET_PROFILES",
    "MPT_PROFILES",
    "get_profile",
    "answer_question",
    "find_entities",
    "fill_mask",
    "classify_text",
    "generate_text",
    "classify_zero_shot",
    "TextStreamer",
    "Tokenizer",
    "__version__",
]
