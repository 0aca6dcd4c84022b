"""``python -m au_transfer.datasets.demo docs/img/demo_aus.png``: save the AU contact sheet."""

import sys

from .sheet import au_contact_sheet

if __name__ == "__main__":
    au_contact_sheet(sys.argv[1] if len(sys.argv) > 1 else "docs/img/demo_aus.png")
