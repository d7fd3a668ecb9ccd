"""Remote Sensing Segmentation: a thin QGIS adapter for the rsseg engine (run as a subprocess).

Nothing heavy happens at import time: QGIS calls `classFactory` when the plugin is enabled.
"""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS entry point: the plugin object for the QGIS interface `iface`."""
    from rs_qgis_plugin.plugin import SegmentationPlugin

    return SegmentationPlugin(iface)
