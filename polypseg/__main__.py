from polypseg.cli import main
import sys
sys.exit(main())
