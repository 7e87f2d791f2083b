"""scikit-learn estimators: :class:`BPNNClassifier` and :class:`BPNNRegressor`.

Needs scikit-learn (``pip install 'bpnn[sklearn]'``). They pass scikit-learn's own
``check_estimator`` (:data:`EXPECTED_FAILED_CHECKS` lists any check expected to fail,
with the reason) and work inside ``Pipeline`` and ``GridSearchCV``.
"""
from .._checks import missing_dependency

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise missing_dependency("bpnn.sklearn", "scikit-learn", "'bpnn[sklearn]'", exc) from exc

from .classifier import BPNNClassifier
from .regressor import BPNNRegressor

#: scikit-learn checks expected to fail, per estimator class name: {check name: reason}.
#: Pass ``expected_failed_checks=EXPECTED_FAILED_CHECKS[type(est).__name__]`` to
#: ``check_estimator`` / ``parametrize_with_checks``.
EXPECTED_FAILED_CHECKS: dict = {"BPNNClassifier": {}, "BPNNRegressor": {}}

__all__ = ["BPNNClassifier", "BPNNRegressor", "EXPECTED_FAILED_CHECKS"]
