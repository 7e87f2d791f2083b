"""The MATLAB-style plots (``plotperform``, ``plotregression``, ...) under their short
import path: ``from bpnn.plotting import plot_performance``. They live in
``bpnn.report.plotting``, beside the HTML report's figures."""
from .report.plotting import (
    confusion_matrix, plot_confusion, plot_error_histogram, plot_performance, plot_regression,
    plot_train_state, regression_r,
)

__all__ = ["plot_performance", "plot_train_state", "plot_regression", "plot_error_histogram",
           "plot_confusion", "confusion_matrix", "regression_r"]
