"""Model files, interop and export.

- :func:`save` / :func:`load`: one safetensors file (arrays) carrying the architecture
  and hyperparameters as JSON, with a format version and migrations; never pickle.
- :func:`to_torch_state_dict` / :func:`from_torch_state_dict` (NumPy only) and
  :func:`to_torch_module` / :func:`from_torch_module` (need torch).
- :func:`export_onnx` (needs ``bpnn[onnx]``), opset 17.
- :class:`TensorBoard`, a training callback (needs ``bpnn[tensorboard]``).
- :func:`atomic_write` / :func:`write_bytes_atomic` / :func:`write_text_atomic`: crash-safe file writes.

Optional packages (torch, onnx, tensorboardX) are imported only when used.
"""
from .atomic import atomic_write, write_bytes_atomic, write_text_atomic
from .errors import InvalidModelFileError, ModelFileAccessError, ModelFileError, ModelFileNotFoundError
from .migrations import FORMAT_VERSION
from .onnx_export import OPSET, export_onnx
from .serialization import load, read_document, save
from .tensorboard import TensorBoard
from .torch_interop import from_torch_module, from_torch_state_dict, to_torch_module, to_torch_state_dict

__all__ = [
    "save", "load", "read_document", "FORMAT_VERSION", "ModelFileError", "InvalidModelFileError",
    "ModelFileNotFoundError", "ModelFileAccessError", "to_torch_state_dict", "from_torch_state_dict",
    "to_torch_module", "from_torch_module", "export_onnx", "OPSET", "TensorBoard", "atomic_write",
    "write_bytes_atomic", "write_text_atomic",
]
