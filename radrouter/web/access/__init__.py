"""Access to the web app: who the caller is (session or token), what their role allows, and the
defences every request passes (host and origin checks, CSRF, security headers).

The pages and routers call only :func:`require`, :func:`current_user` and :func:`csrf_token`.
"""

from radrouter.config.access import Role
from radrouter.web.access.csrf import csrf_token
from radrouter.web.access.principal import Principal, current_user, require

__all__ = ["Principal", "Role", "csrf_token", "current_user", "require"]
