"""Regenerate the README's configuration reference from the config tree (`kale-ray config keys`)."""

import re
import subprocess
import sys
from pathlib import Path

readme = Path(__file__).resolve().parent.parent / "README.md"
table = subprocess.run([sys.executable, "-m", "kale_ray.cli", "config", "keys"], capture_output=True,
                       text=True, check=True).stdout
text = readme.read_text()
text = re.sub(r"(<!-- config-reference:start -->\n).*?(<!-- config-reference:end -->)",
              lambda m: m.group(1) + table + m.group(2), text, flags=re.S)
readme.write_text(text)
