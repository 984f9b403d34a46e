"""A readable NumPy reference of MPNet (and, later, MPT) as implemented by Hugging Face transformers 4.37.2."""

from .checkpoint import CheckpointError
from .loading import build, from_pretrained
from .mpnet import (
    MPNetConfig,
    MPNetForMaskedLM,
    MPNetForMultipleChoice,
    MPNetForQuestionAnswering,
    MPNetForSequenceClassification,
    MPNetForTokenClassification,
    MPNetModel,
)
from .profiles import MPNET_PROFILES, get_profile
from .tokenizer import Tokenizer

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "build", "from_pretrained", "MPNetConfig", "MPNetModel", "MPNetForMaskedLM",
    "MPNetForSequenceClassification", "MPNetForMultipleChoice", "MPNetForTokenClassification",
    "MPNetForQuestionAnswering", "MPNET_PROFILES", "get_profile", "Tokenizer", "__version__",
]
