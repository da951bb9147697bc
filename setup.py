"""Packaging from `settings.ini` (the nbdev 2.4 layout).

`pip install -e ".[dev]"` installs the package, its runtime requirements, the `dev` extras
(nbdev, execnb, fastcore, pytest and the test oracles) and the `depthnb` console script.
"""
from configparser import ConfigParser

import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']
for key in 'lib_name version description author author_email license min_python git_url'.split():
    assert key in cfg, f'settings.ini is missing {key!r}'

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    license='Apache-2.0',
    url=cfg['git_url'],
    python_requires=f">={cfg['min_python']}",
    # namespace discovery, so data folders without __init__.py (depthnb/data/splits) are packages and their
    # files, listed in MANIFEST.in, are installed as package data
    packages=setuptools.find_namespace_packages(include=[cfg['lib_name'], cfg['lib_name'] + '.*'], exclude=['*.__pycache__']),
    include_package_data=True,
    install_requires=cfg.get('requirements', '').split(),
    extras_require={'dev': cfg.get('dev_requirements', '').split()},
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    zip_safe=False,
)
