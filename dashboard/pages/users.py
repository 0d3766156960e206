"""The users page (``/users``, admins): list and search, create (the generated password is shown once),
change role, deactivate and reactivate, reset password (shown once), and API tokens (created and shown
once, listed, revoked). Everything goes through ``engine.accounts``.
"""

from __future__ import annotations

from typing import Any

import panel as pn
import panel_material_ui as pmui
import param

from dashboard.pages import ui
from dashboard.pages.base import PageContext
from dashboard.pages.feedback import attempt, notify, run_action
from engine import accounts
from engine.db import session_scope
from engine.errors import NotFound, ValidationFailed
from engine.models import ROLES, User
from engine.settings import Settings

USER_COLUMNS = ["ID", "Nome", "E-mail", "Perfil", "Situação", "Último acesso", "Criado em"]
TOKEN_COLUMNS = ["ID", "Nome", "Prefixo", "Criado em", "Último uso", "Situação"]
ROLE_OPTIONS = {ui.role_label(r): r for r in ROLES}


def user_row(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "email": user.email, "role": user.role,
            "role_label": ui.role_label(user.role), "is_active": user.is_active,
            "last_login_at": ui.fmt_datetime(user.last_login_at), "created_at": ui.fmt_datetime(user.created_at)}


class UsersModel(param.Parameterized):
    """The user list, the selected user with their tokens, and the one-time secret being shown."""

    search = param.String(default="", label="Buscar")
    users = param.List(default=[])
    selected_id = param.Integer(default=None, allow_None=True)
    selected = param.Dict(default=None, allow_None=True)
    tokens = param.List(default=[])
    role = param.Selector(default="viewer", objects=ROLE_OPTIONS, label="Perfil")

    new_email = param.String(default="", label="E-mail")
    new_name = param.String(default="", label="Nome")
    new_role = param.Selector(default="staff", objects=ROLE_OPTIONS, label="Perfil")
    token_name = param.String(default="", label="Nome do token")

    revealed = param.Dict(default=None, allow_None=True)  # {title, value, note}: a secret shown once

    def __init__(self, *, settings: Settings, user: Any, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.user = user

    @param.depends("search", watch=True)
    def refresh(self) -> None:
        with session_scope(self.settings) as s:
            self.users = [user_row(u) for u in accounts.list_users(s, actor=self.user, search=self.search.strip())]
        if self.selected_id is not None:
            self.load_selected()

    @param.depends("selected_id", watch=True)
    def load_selected(self) -> None:
        if self.selected_id is None:
            self.param.update(selected=None, tokens=[])
            return
        with session_scope(self.settings) as s:
            user = accounts.get_user(s, user_id=self.selected_id)
            if user is None:
                raise NotFound(f"Usuário {self.selected_id} não encontrado.", entity="user", key=self.selected_id)
            tokens = accounts.list_tokens(s, actor=self.user, user_id=user.id)
            selected = user_row(user)
            listed = [{"id": t.id, "name": t.name, "prefix": t.prefix + "…",
                       "created_at": ui.fmt_datetime(t.created_at), "last_used_at": ui.fmt_datetime(t.last_used_at),
                       "revoked": t.revoked_at is not None, "revoked_at": ui.fmt_datetime(t.revoked_at)}
                      for t in tokens]
        self.param.update(selected=selected, tokens=listed, role=selected["role"])

    @property
    def is_self(self) -> bool:
        return self.selected_id is not None and self.selected_id == getattr(self.user, "id", None)

    def _reveal(self, title: str, value: str, note: str) -> None:
        self.revealed = {"title": title, "value": value, "note": note}

    def dismiss_secret(self) -> None:
        self.revealed = None

    # Actions (each raises engine errors; the page turns them into notifications) ---------------------------
    def create(self) -> int:
        if not self.new_email.strip():
            raise ValidationFailed("Informe o e-mail do novo usuário.",
                                   errors=[{"field": "email", "message": "obrigatório"}])
        with session_scope(self.settings) as s:
            user, password = accounts.create_user(s, actor=self.user, email=self.new_email, role=self.new_role,
                                                  name=self.new_name)
            s.flush()
            user_id, email = user.id, user.email
        self.param.update(new_email="", new_name="")
        self._reveal(f"Senha inicial de {email}", password or "",
                     "Copie e entregue à pessoa agora: esta senha não será mostrada de novo. "
                     "Ela pode trocá-la depois de entrar.")
        self.refresh()
        self.selected_id = user_id
        return user_id

    def save_role(self) -> None:
        with session_scope(self.settings) as s:
            accounts.update_user(s, actor=self.user, user_id=self.selected_id, role=self.role)
        self.refresh()

    def set_active(self, active: bool) -> None:
        with session_scope(self.settings) as s:
            accounts.update_user(s, actor=self.user, user_id=self.selected_id, is_active=active)
        self.refresh()

    def reset_password(self) -> None:
        with session_scope(self.settings) as s:
            password = accounts.reset_password(s, actor=self.user, user_id=self.selected_id)
        email = self.selected["email"] if self.selected else ""
        self._reveal(f"Nova senha de {email}", password or "",
                     "Copie agora: esta senha não será mostrada de novo. As sessões abertas com a senha "
                     "antiga foram encerradas; os tokens de API continuam valendo.")
        self.refresh()

    def create_token(self) -> int:
        with session_scope(self.settings) as s:
            token, clear = accounts.create_token(s, actor=self.user, user_id=self.selected_id,
                                                 name=self.token_name)
            s.flush()
            token_id = token.id
        self.token_name = ""
        email = self.selected["email"] if self.selected else ""
        self._reveal(f"Token de API de {email}", clear,
                     "Copie agora: o token não será mostrado de novo (guardamos só o resumo dele). Use-o no "
                     "cabeçalho Authorization: Bearer ...")
        self.load_selected()
        return token_id

    def revoke_token(self, token_id: int) -> None:
        with session_scope(self.settings) as s:
            accounts.revoke_token(s, actor=self.user, token_id=token_id)
        self.load_selected()


class UsersPage(pn.viewable.Viewer):
    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(**params)
        self.ctx = ctx
        vm = self.model = UsersModel(settings=ctx.settings, user=ctx.user)
        self._token_choice: int | None = None

        # One-time secret: a modal, so it is seen wherever the action was (and closed on purpose).
        self.secret = ui.html_pane()
        self.secret_dialog = pmui.Dialog(self.secret, pmui.Button(label="Já copiei", icon="check",
                                                                  on_click=lambda _: vm.dismiss_secret()),
                                         title="Mostrado uma única vez", open=False, close_on_click=False,
                                         width_option="sm", css_classes=["ofc-secret-dialog"])

        # Create form.
        self.create_card = ui.card(
            pn.FlexBox(pmui.TextInput.from_param(vm.param.new_email, placeholder="pessoa@empresa.com.br",
                                                 width=300),
                       pmui.TextInput.from_param(vm.param.new_name, placeholder="Nome e sobrenome", width=260),
                       pmui.Select.from_param(vm.param.new_role, width=200),
                       pmui.Button(label="Criar usuário", icon="person_add", on_click=lambda _: self._create(),
                                   align="center"),
                       pmui.Button(label="Fechar", variant="text", align="center",
                                   on_click=lambda _: setattr(self.create_card, "visible", False)),
                       gap="12px", align_items="center"),
            ui.html_pane('<p class="ofc-muted">Uma senha inicial é gerada e mostrada uma única vez.</p>'),
            title="Novo usuário", visible=False)
        new_button = pmui.Button(label="Novo usuário", icon="person_add",
                                 on_click=lambda _: setattr(self.create_card, "visible", True))

        # List.
        self.table = ui.table(USER_COLUMNS, formatters={"Situação": {"type": "html"}}, widths={"ID": 70},
                              pagination="local", page_size=25, css_classes=["ofc-users-table"])
        self.table.on_click(self._on_user_click)
        self.list_empty = ui.html_pane(visible=False)

        # Selected user.
        self.user_header = ui.html_pane()
        self.save_role_button = pmui.Button(label="Salvar perfil", icon="save", variant="outlined", align="center",
                                            on_click=lambda _: self._run(vm.save_role, "Perfil atualizado."))
        self.deactivate_button = pmui.Button(label="Desativar", icon="block", color="error", variant="outlined",
                                             align="center", on_click=lambda _: self._run(
                                                 lambda: vm.set_active(False), "Usuário desativado."))
        self.reactivate_button = pmui.Button(label="Reativar", icon="check_circle", variant="outlined",
                                             align="center", on_click=lambda _: self._run(
                                                 lambda: vm.set_active(True), "Usuário reativado."))
        self.reset_button = pmui.Button(label="Redefinir senha", icon="lock_reset", variant="outlined",
                                        align="center",
                                        on_click=lambda _: self._run(vm.reset_password, "Senha redefinida."))
        self.tokens_table = ui.table(TOKEN_COLUMNS, formatters={"Situação": {"type": "html"}}, widths={"ID": 70},
                                     css_classes=["ofc-tokens-table"])
        self.tokens_table.on_click(self._on_token_click)
        self.tokens_empty = ui.html_pane(ui.empty_state(
            "Nenhum token de API", "Crie um token para que um script ou outro sistema use a API em nome desta "
            "pessoa. Ele aparece uma única vez.", "key"))
        self.revoke_button = pmui.Button(label="Revogar token", icon="key_off", color="error", variant="outlined",
                                         disabled=True, on_click=lambda _: self._revoke())
        self.detail_card = ui.card(
            self.user_header,
            pn.FlexBox(pmui.Select.from_param(vm.param.role, width=200), self.save_role_button,
                       self.reset_button, self.deactivate_button, self.reactivate_button, gap="12px",
                       align_items="center"),
            ui.html_pane('<h2 class="ofc-card-title" style="margin-top:16px">Tokens de API</h2>'),
            pn.FlexBox(pmui.TextInput.from_param(vm.param.token_name, placeholder="ex.: integração financeira",
                                                 width=280),
                       pmui.Button(label="Criar token", icon="vpn_key", align="center",
                                   on_click=lambda _: self._run(vm.create_token, "Token criado.")),
                       self.revoke_button, gap="12px", align_items="center"),
            self.tokens_table, self.tokens_empty, visible=False)

        self.header = ui.page_header("Usuários", "Contas de acesso, perfis e tokens de API. Clique em uma pessoa "
                                                 "para mudar o perfil, redefinir a senha ou gerenciar tokens.",
                                     new_button)
        self.search = pmui.TextInput.from_param(vm.param.search, placeholder="Nome ou e-mail", width=320,
                                                size="small")
        vm.param.watch(self._show_users, ["users"])
        vm.param.watch(self._show_selected, ["selected", "tokens"])
        vm.param.watch(self._show_secret, ["revealed"])
        run_action(vm.refresh)
        self._show_users()
        self._show_selected()
        self._show_secret()

    @classmethod
    def create(cls, ctx: PageContext) -> UsersPage:
        return cls(ctx)

    def _run(self, fn: Any, success: str) -> None:
        attempt(fn, success=success)

    def _create(self) -> None:
        user_id = run_action(self.model.create)
        if user_id is not None:
            self.create_card.visible = False
            notify("Usuário criado. Copie a senha inicial antes de fechar a janela.", "success")

    def _revoke(self) -> None:
        if self._token_choice is None:
            return
        token_id = self._token_choice
        self._run(lambda: self.model.revoke_token(token_id), "Token revogado: ele deixou de funcionar.")

    def _on_user_click(self, event: Any) -> None:
        try:
            user_id = int(self.table.current_view.iloc[event.row]["ID"])
        except (IndexError, KeyError, ValueError, TypeError, AttributeError):
            return
        run_action(setattr, self.model, "selected_id", user_id)

    def _on_token_click(self, event: Any) -> None:
        try:
            row = self.tokens_table.value.iloc[event.row]
        except (IndexError, AttributeError):
            return
        token = next((t for t in self.model.tokens if t["id"] == int(row["ID"])), None)
        if token is None or token["revoked"]:
            self._token_choice = None
            self.revoke_button.disabled = True
            self.revoke_button.label = "Revogar token"
            return
        self._token_choice = token["id"]
        self.revoke_button.disabled = False
        self.revoke_button.label = f"Revogar \u201c{token['name'] or token['prefix']}\u201d"

    def _show_users(self, *_: Any) -> None:
        rows = [{"ID": u["id"], "Nome": u["name"], "E-mail": u["email"], "Perfil": u["role_label"],
                 "Situação": ui.badge("Ativo", "success") if u["is_active"] else ui.badge("Desativado", "error"),
                 "Último acesso": u["last_login_at"] or "nunca", "Criado em": u["created_at"]}
                for u in self.model.users]
        self.table.value = ui.frame(rows, USER_COLUMNS)
        self.table.visible = bool(rows)
        if not rows:
            self.list_empty.object = ui.empty_state(
                "Ninguém encontrado", "Nenhum nome ou e-mail contém esse texto. Apague a busca ou crie um "
                "usuário em \u201cNovo usuário\u201d.", "person_search")
        self.list_empty.visible = not rows

    def _show_selected(self, *_: Any) -> None:
        vm = self.model
        user = vm.selected
        self.detail_card.visible = user is not None
        if user is None:
            return
        status = ui.badge("Ativo", "success") if user["is_active"] else ui.badge("Desativado", "error")
        you = ' <span class="ofc-muted">(você)</span>' if vm.is_self else ""
        self.user_header.object = (
            f'<div class="ofc-page-header" data-user-id="{user["id"]}"><h1 style="font-size:20px">'
            f'{ui.esc(user["name"] or user["email"])}{you} {status}</h1>'
            f'<p>{ui.esc(user["email"])} · {ui.esc(user["role_label"])} · último acesso: '
            f'{ui.esc(user["last_login_at"] or "nunca")}</p></div>')
        self.deactivate_button.visible = user["is_active"] and not vm.is_self
        self.reactivate_button.visible = not user["is_active"]
        rows = [{"ID": t["id"], "Nome": t["name"] or "—", "Prefixo": t["prefix"], "Criado em": t["created_at"],
                 "Último uso": t["last_used_at"] or "nunca",
                 "Situação": ui.badge(f"Revogado em {t['revoked_at']}", "error") if t["revoked"]
                 else ui.badge("Ativo", "success")} for t in vm.tokens]
        self.tokens_table.value = ui.frame(rows, TOKEN_COLUMNS)
        self.tokens_table.visible = bool(rows)
        self.tokens_empty.visible = not rows
        self._token_choice = None
        self.revoke_button.disabled = True
        self.revoke_button.label = "Revogar token"

    def _show_secret(self, *_: Any) -> None:
        secret = self.model.revealed
        if secret is not None:
            self.secret.object = ui.secret_box(secret["title"], secret["value"], secret["note"])
        self.secret_dialog.open = secret is not None

    def __panel__(self) -> Any:
        return pn.Column(self.header, self.secret_dialog, self.create_card,
                         ui.card(self.search, self.table, self.list_empty, title="Pessoas com acesso"),
                         self.detail_card, sizing_mode="stretch_width")
