"""finejobs.web: the operations console (pages, REST API, metrics) as one ASGI app (extra ``finejobs[web]``).

```python
import finejobs.web
app = finejobs.web.app(queue)                                  # serve with uvicorn, or mount it:
parent.mount("/jobs", finejobs.web.app(queue, access=finejobs.web.Access.from_file("access.toml")))
```
or ``finejobs web --app myapp.jobs:queue [--host 127.0.0.1 --port 8400] [--access FILE]``. See docs/console.md.
"""

from finejobs.web.app import API_PREFIX, app
from finejobs.web.security import Access, Principal, hash_password, new_token, verify_password
from finejobs.web.server import serving

__all__ = ["API_PREFIX", "Access", "Principal", "app", "hash_password", "new_token", "serving", "verify_password"]
