"""An auth module written for ``bokeh serve``: Tornado handlers, a template beside it, XSRF, secure cookies."""
import tornado.escape
from tornado.web import RequestHandler

USERS = {"alice": "wonderland", "bob": "builder"}


def get_user(request_handler):
    user = request_handler.get_secure_cookie("user")
    return tornado.escape.json_decode(user) if user else None


login_url = "/login"
logout_url = "/logout"


class LoginHandler(RequestHandler):
    def get(self):
        self.render("login.html", error=self.get_argument("error", ""), next_url=self.get_argument("next", "/"))

    async def post(self):
        name = self.get_argument("username", "")
        if USERS.get(name) != self.get_argument("password", ""):
            self.set_status(401)
            self.render("login.html", error="wrong password", next_url=self.get_argument("next", "/"))
            return
        self.set_secure_cookie("user", tornado.escape.json_encode(name))
        target = self.get_argument("next", "/")
        self.redirect(target if target.startswith("/") and not target.startswith("//") else "/")


class LogoutHandler(RequestHandler):
    def get(self):
        self.clear_cookie("user")
        self.redirect("/")
