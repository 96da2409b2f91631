"""Let mmengine resolve ``mmdet_conddetr::path`` configs, installed or editable.

mmengine 0.10.x accepts ``package::path`` only for packages in its
``MODULE2PACKAGE`` table, and finds a package's files at
``<distribution location>/<package>``. For a PEP 660 editable install
(``pip install -e .``) the distribution's location is site-packages while the
package stays in the source tree, so the lookup points at a folder that does
not exist. :func:`register_package_configs` adds the table entry and answers
mmengine's path question for this package only, from the imported module
itself, which is right for normal and editable installs alike.
"""
import os.path as osp

PACKAGE = 'mmdet_conddetr'


def register_package_configs() -> None:
    """Make ``mmdet_conddetr::conditional_detr/<name>.py`` resolvable by
    config inheritance and by ``mmengine.hub.get_config``."""
    from mmengine.config import config as config_module
    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.hub import hub as hub_module

    MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)
    for module in (config_module, hub_module):
        resolve = module.get_installed_path
        if getattr(resolve, 'answers_for', None) != PACKAGE:
            module.get_installed_path = _answering_for_us(resolve)


def _answering_for_us(resolve):

    def get_installed_path(package: str) -> str:
        if package == PACKAGE:
            return osp.dirname(osp.dirname(osp.abspath(__file__)))
        return resolve(package)

    get_installed_path.answers_for = PACKAGE
    return get_installed_path
