"""The project's exceptions.

Each inherits from the builtin a caller would naturally catch, and each message says what was expected,
what was got, and what to do (sklearn ``exceptions.py``; spaCy ``errors.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.exceptions import NotFittedError

__all__ = [
    "ComplaintInputError",
    "EmptyTextError",
    "NotAListError",
    "PlaceHintError",
    "TextTooLongError",
    "UnknownTargetError",
    "TrainingDataError",
    "MissingColumnError",
    "TimeColumnError",
    "RareClassError",
    "DataFormatError",
    "ConfigError",
    "DictionaryError",
    "DirectoryError",
    "ModelStoreError",
    "ModelNotFoundError",
    "AmbiguousVersionError",
    "NoCurrentModelError",
    "CorruptModelError",
    "ModelIntegrityError",
    "ModelSignatureError",
    "ModelTypeError",
    "ModelStoreLockedError",
    "ModelVersionError",
    "ModelVersionWarning",
    "NotFittedError",
    "DecisionLogError",
    "CorrectionError",
    "UnknownCaseError",
]


class ComplaintInputError(ValueError):
    """A complaint text (or the container of texts) handed to the model is unusable."""


class EmptyTextError(ComplaintInputError):
    """A text is empty or whitespace only."""


class TextTooLongError(ComplaintInputError):
    """A text is longer than the configured limit."""


class PlaceHintError(ComplaintInputError):
    """Place hints that cannot be used: not one per text, not text, too long, or given to a model that does not
    route by place."""


class UnknownTargetError(KeyError):
    """A target name (e.g. "agency") that the model was not trained for."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class TrainingDataError(ValueError):
    """Labeled data cannot be used for training as it is."""


class MissingColumnError(TrainingDataError, KeyError):
    """A column named on the command line or in ``train(...)`` is not in the data."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TimeColumnError(TrainingDataError):
    """A time column (``--time``) has missing or unreadable dates."""


class RareClassError(TrainingDataError):
    """Some classes have fewer examples than ``min_class_count``."""


class DataFormatError(TrainingDataError):
    """A data file cannot be read (unknown format, undecodable bytes, empty file)."""


class ConfigError(ValueError):
    """A configuration value or file is invalid."""


class DictionaryError(ValueError):
    """A user dictionary or stop-word file is missing or malformed."""


class DirectoryError(ValueError):
    """A routing directory (places, agencies, functions) is missing, malformed or inconsistent."""


class ModelStoreError(RuntimeError):
    """Base class for problems with the versioned model store."""


class ModelNotFoundError(ModelStoreError, FileNotFoundError):
    """A version (or the store itself) does not exist."""


class AmbiguousVersionError(ModelNotFoundError):
    """A version prefix matches several versions."""


class NoCurrentModelError(ModelNotFoundError):
    """The store has versions but no current pointer, or no versions at all."""


class CorruptModelError(ModelStoreError):
    """A version folder is partial or unreadable (missing manifest, missing file, bad JSON)."""


class ModelIntegrityError(CorruptModelError):
    """A file's sha256 differs from the manifest: the model is refused before unpickling."""


class ModelSignatureError(ModelIntegrityError):
    """A signing key is set and a version's manifest is unsigned, signed with another key, or changed since it
    was signed: the model is refused before unpickling."""


class ModelTypeError(CorruptModelError):
    """A version's verified ``model.joblib`` unpickled to something that is not a model (a dict, a list...)."""


class ModelStoreLockedError(ModelStoreError, TimeoutError):
    """Another process held the store's lock (saving, promoting) for longer than the wait allowed."""


class ModelVersionError(ModelStoreError):
    """Library versions differ from the ones the model was trained with, and strict loading was asked."""


class ModelVersionWarning(UserWarning):
    """Library versions differ from the ones the model was trained with (like sklearn's
    ``InconsistentVersionWarning``)."""


class NotAListError(ComplaintInputError, TypeError):
    """A single string (or None, or a non-sequence) was given where a list of texts is expected."""


# -- the decision log (live/) ---------------------------------------------------------------------------------
class DecisionLogError(RuntimeError):
    """The decision log's database cannot be reached or written (the service answers 503 for corrections)."""


class CorrectionError(ValueError):
    """A correction is unusable: unknown target or source, bad label, too early, too many."""


class UnknownCaseError(CorrectionError, LookupError):
    """A correction names a case id the log has never seen and carries no text to learn from."""


def __getattr__(name: str) -> Any:
    """``NotFittedError`` is scikit-learn's, imported on first use: a process that only needs the project's own
    errors (the decision log's writer process, ``live.writer_process``) does not pay scikit-learn's import
    (~1 s)."""
    if name == "NotFittedError":
        from sklearn.exceptions import NotFittedError

        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

