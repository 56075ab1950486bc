"""Per-request records: built from stream events, journaled as JSONL."""

from .journal import Journal, read_journal
from .record import ERROR_KINDS, ErrorInfo, RequestRecord
from .recorder import EstimatedChatRecorder, StreamRecorder

__all__ = ["ERROR_KINDS", "ErrorInfo", "EstimatedChatRecorder", "Journal", "RequestRecord", "StreamRecorder",
           "read_journal"]
