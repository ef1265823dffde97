"""An ``--auth-module`` for bokeh-flask, written the way ``bokeh serve`` modules are.

``get_user`` only reads the request, through the Tornado-style handler both
servers pass (the user name is a cookie signed with ``--cookie-secret``), so
it runs unchanged under either server. The login and logout pages are Flask
views, which bokeh-flask mounts at ``login_url`` / ``logout_url`` (``bokeh
serve`` would want Tornado handlers there)::

    bokeh-flask serve examples/sliders.py --auth-module examples/auth/auth_module.py \\
        --cookie-secret "$(bokeh-flask secret)"

then open http://localhost:5006/sliders and log in as alice / wonderland.
A real site would check passwords against hashes (``werkzeug.security``).
"""
from html import escape

from flask import make_response, redirect, request

from bokeh_flask import local_url, set_secure_cookie
from bokeh_flask import xsrf_form_html

USERS = {"alice": "wonderland", "bob": "builder"}

login_url = "/login"
logout_url = "/logout"


def get_user(request_handler):
    user = request_handler.get_secure_cookie("user")
    return user.decode("utf-8") if user else None


def LoginHandler():
    next_url = local_url(request.values.get("next"))  # only a path on this site
    error = ""
    if request.method == "POST":
        name, password = request.form.get("username", ""), request.form.get("password", "")
        if USERS.get(name) == password:
            response = redirect(next_url)
            set_secure_cookie(response, "user", name)
            return response
        error = "<p class='error'>Unknown user or wrong password.</p>"
    page = f"""<!doctype html><title>Log in</title>
<h1>Log in</h1>{error}
<form method="post" action="?next={escape(next_url)}">
  {xsrf_form_html()}
  <label>User <input name="username" autofocus></label>
  <label>Password <input name="password" type="password"></label>
  <button type="submit">Log in</button>
</form>"""
    return make_response(page, 401 if error else 200)


def LogoutHandler():
    response = redirect(request.script_root + login_url)
    response.delete_cookie("user")
    return response
