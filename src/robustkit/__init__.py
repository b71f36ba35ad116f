"""robustkit: adversarial attacks, adversarial training and honest robustness audits for PyTorch."""
from .threat import ThreatModel
from . import attacks
from .evaluation import evaluate

__version__ = "0.1.0"
__all__ = ["ThreatModel", "attacks", "evaluate", "__version__"]
