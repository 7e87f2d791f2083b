"""Training: the Trainer, callbacks and the History."""
from .callbacks import Callback, CallbackList, History
from .trainer import NonFiniteLossWarning, Trainer

__all__ = ["Trainer", "Callback", "CallbackList", "History", "NonFiniteLossWarning"]
