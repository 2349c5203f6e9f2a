"""Files shipped with the package: the bundled radar model (SimVP Dyna-Pruner trained on FMI + KNMI + NOAA MRMS
radar, 4 km, 5 min) and a small real radar sample (FMI)."""
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
BUNDLED_MODEL = ASSETS / "radar_multi_simvp.pt"
BUNDLED_SAMPLE = ASSETS / "radar_fmi_sample"
