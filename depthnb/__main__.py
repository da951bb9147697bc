# Hand-written, not exported: nbdev cannot export a `__main__.py`. `python -m depthnb …` and
# `torchrun … -m depthnb train …` run the `depthnb` command (depthnb.cli.main, nbs/60_cli.ipynb).
if __name__ == '__main__':
    import sys
    from depthnb.cli import main
    sys.exit(main())
