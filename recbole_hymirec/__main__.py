"""``python -m recbole_hymirec``: the command line of ``run_recbole_hymirec.py`` (train and
test a plugin model or any RecBole model)."""
import sys

from run_recbole_hymirec import main

if __name__ == "__main__":
    sys.exit(main())
