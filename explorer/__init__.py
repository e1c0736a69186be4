"""musicmap explorer: the Dash app over a store. Imports ``store`` only, never torch.

Where each idea lives: the app factory in ``app.py``; the map's points, search and hover cards in
``mapdata.py``; the page in ``layout.py``; the callbacks, each declared once on its method, in
``callbacks.py``; the similar list's five controls as one value in ``controls.py``; the side panels
(pure renderers) in ``panels.py``; the figure (traces, patches, colours) in ``figure.py``; the
URL's view state in ``state.py``; the JSON API in ``api.py`` and its parameter table (parsing and
OpenAPI) in ``params.py``; cover art in ``art.py``; OpenSubsonic (a method and a table row per
OpenSubsonic method) in ``subsonic.py``; the SQL tab in ``sqltab.py``; uploads (query by clip) in
``upload.py``; the access token in ``auth.py``; every limit in ``limits.py``. In the browser
(``assets/``): the points (``pointmap.js``), the highlight drawn over them (``overlay.js``; both
canvases placed by ``canvas.js``), the track panel a click opens (``track.js``, from
``/api/v1/panel/<id>``), the hover card (``hovercard.js``), track lists and action buttons
(``lists.js``), keys (``keys.js``), the players' queues (``queue.js``), the upload box's file input
(``upload.js``).
"""

from .app import create_app

__all__ = ["create_app"]
