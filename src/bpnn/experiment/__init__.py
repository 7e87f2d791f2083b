"""Studies: a specification of runs (inits × optimizers × activations × depths × lrs ×
seeds), run through joblib (local processes, or a Dask / Ray cluster), aggregated over
seeds, and written as JSON, CSV and TOML. ``bpnn compare`` is its command line."""
from ..data import read_csv  # re-exported: a study's --data FILE is read by it
from .datasets import StudyData, load_study_data
from .results import Group, StudyResult
from .runner import build_model, run_one, run_study
from .spec import DEFAULT_INITS, StudySpec, label_of

__all__ = ["StudySpec", "StudyResult", "StudyData", "Group", "run_study", "run_one", "build_model",
           "load_study_data", "read_csv", "label_of", "DEFAULT_INITS"]
