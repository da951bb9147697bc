# Hand-written, not exported: nbdev cannot export a `__main__.py`. `python -m depthnb …` and
# `torchrun … -m depthnb train …` run the `depthnb` command (depthnb.cli.main, nbs/60_cli.ipynb).
if __name__ == '__main__':
    import os
    import sys
    from depthnb.cli import main
    code = main()
    if 'TORCHELASTIC_RUN_ID' in os.environ:
        # A torchrun worker whose work is done and written (checkpoints are fsynced, the process group left):
        # end it without the interpreter's C++ teardown, where gloo's threads now and then abort a rank
        # ('terminate called without an active exception') after a successful run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    sys.exit(code)
