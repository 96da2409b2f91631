#!/usr/bin/env python
"""Packaging of mmdet_conddetr (Conditional DETR for MMDetection 3.x).

Besides the Python package, the wheel carries ``configs/``, ``tools/`` and
``model-index.yml`` under ``mmdet_conddetr/.mim/``. mmengine resolves
``mmdet_conddetr::conditional_detr/<name>.py`` (``_base_`` entries, ``mim``)
relative to ``<installed package>/.mim/``, the layout every OpenMMLab package
uses. :func:`add_mim_extension` builds that folder before setuptools runs:
symlinks for editable installs (edits show up at once), copies for wheels and
source distributions (which cannot hold links to outside the package).
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
PACKAGE = 'mmdet_conddetr'
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')

# setuptools commands that decide how .mim is filled. Anything else (egg_info,
# dist_info, --version, clean ...) leaves the folder untouched.
_LINK_COMMANDS = ('develop', 'editable_wheel')
_COPY_COMMANDS = ('bdist_wheel', 'sdist', 'build', 'build_py', 'install',
                  'bdist_egg')


def read_version():
    """Read ``__version__`` without importing the package (it needs torch)."""
    namespace = {}
    with open(osp.join(HERE, PACKAGE, 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'version.py', 'exec'), namespace)
    return namespace['__version__']


def read_requirements(name):
    """Return the requirement lines of ``requirements/<name>.txt``.

    Blank lines, comments and pip options (``-r``, ``--find-links`` ...) are
    skipped; version ranges and environment markers are kept as written.
    """
    path = osp.join(HERE, 'requirements', f'{name}.txt')
    requirements = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.split(' #', 1)[0].strip()
            if not line or line.startswith(('#', '-')):
                continue
            requirements.append(line)
    return requirements


def read_readme():
    path = osp.join(HERE, 'README.md')
    if not osp.exists(path):
        return ''
    with open(path, encoding='utf-8') as f:
        return f.read()


def _remove(path):
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


def add_mim_extension():
    """Fill ``mmdet_conddetr/.mim`` with configs, tools and model-index.yml."""
    commands = sys.argv[1:]
    if any(cmd in commands for cmd in _LINK_COMMANDS):
        mode = 'symlink'
    elif any(cmd in commands for cmd in _COPY_COMMANDS):
        mode = 'copy'
    else:
        return

    mim_dir = osp.join(HERE, PACKAGE, '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    for item in MIM_ITEMS:
        src = osp.join(HERE, item)
        dst = osp.join(mim_dir, item)
        if not osp.exists(src):
            # Not written yet; drop whatever an earlier build left behind.
            _remove(dst)
            continue
        if mode == 'symlink':
            target = osp.relpath(src, mim_dir)
            if osp.islink(dst) and os.readlink(dst) == target:
                continue
            _remove(dst)
            try:
                os.symlink(target, dst)
                continue
            except OSError:
                # No symlink support (e.g. Windows without developer mode).
                print(f'mmdet_conddetr: cannot symlink {dst}, copying instead')
        _remove(dst)
        if osp.isdir(src):
            shutil.copytree(
                src,
                dst,
                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name=PACKAGE,
        version=read_version(),
        description='Conditional DETR (ICCV 2021) as an MMDetection 3.x '
        'extension',
        long_description=read_readme(),
        long_description_content_type='text/markdown',
        keywords='computer vision, object detection, DETR, mmdetection',
        packages=find_packages(exclude=('tests', 'tests.*', 'configs',
                                        'configs.*', 'tools', 'tools.*')),
        # The .mim folder is no Python package; ship every file inside it.
        package_data={PACKAGE: ['.mim/*', '.mim/**/*']},
        include_package_data=True,
        python_requires='>=3.8',
        install_requires=read_requirements('runtime'),
        extras_require={
            # The test suite covers the ONNX export and runtime too.
            'tests': read_requirements('tests') + read_requirements('deploy'),
            'analysis': read_requirements('analysis'),
            'deploy': read_requirements('deploy'),
        },
        classifiers=[
            'Programming Language :: Python :: 3',
            'Operating System :: OS Independent',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
        ],
        zip_safe=False,
    )
