from mmtune.cli import main

# The guard matters: process pools started with forkserver/spawn import __main__ again.
if __name__ == "__main__":
    raise SystemExit(main())
