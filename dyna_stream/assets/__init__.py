"""Files shipped with the package: the bundled radar model and a small real radar sample."""
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
BUNDLED_MODEL = ASSETS / "radar_fmi_simvp.pt"
BUNDLED_SAMPLE = ASSETS / "radar_fmi_sample"
