"""Training: the Trainer, callbacks, checkpoints and the History."""
from .callbacks import Callback, CallbackList, History
from .checkpoint import CheckpointError, ModelCheckpoint, read_checkpoint, save_checkpoint
from .csv_logger import CSVLogger
from .early_stopping import EarlyStopping
from .live_plot import LiveLossPlot
from .lm_trainer import LMTrainer, TrainingRecord
from .lr_callbacks import LearningRateScheduler, ReduceLROnPlateau
from .trainer import NonFiniteLossWarning, NonFiniteValidationWarning, Trainer

__all__ = ["Trainer", "Callback", "CallbackList", "History", "NonFiniteLossWarning", "NonFiniteValidationWarning",
           "EarlyStopping", "LiveLossPlot", "ReduceLROnPlateau", "LearningRateScheduler", "ModelCheckpoint", "CSVLogger",
           "CheckpointError", "save_checkpoint", "read_checkpoint", "LMTrainer", "TrainingRecord"]
