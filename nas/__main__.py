"""``python -m nas`` runs the command line (how ``nas search --jobs N`` starts its workers)."""
from .cli import main

if __name__ == "__main__":
    main()
