"""The panel's forms. Every POST form is a FlaskForm, so every one carries and checks a CSRF token."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from flask_wtf.form import _Auto
from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    ValidationError,
    widgets,
)
from wtforms.fields import DecimalField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    StopValidation,
)

from app.models import PERMISSIONS, validate_name
from app.stream_sql import FilterError, compile_filter

from .users import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

MAX_GRACE_SECONDS = 30 * 86400
MAX_COUNT = 1_000_000_000  # for limits without a natural bound: a stored number must fit in 64 bits


def _name(kind: str) -> Any:
    def check(form: Any, field: Any) -> None:
        if field.data:
            try:
                validate_name(kind, field.data)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None

    return check


def _strip(value: Any) -> Any:
    """Whitespace-only input counts as empty: ``Optional()`` stops the validators on it but leaves the
    spaces in ``data``, which views took for a value (an app key " ", a StreamSQL filter " ": a 500)."""
    return value.strip() if isinstance(value, str) else value


def _streamsql(form: Any, field: Any) -> None:
    if field.data:
        try:
            compile_filter(field.data)
        except FilterError as exc:
            raise ValidationError(f"Invalid StreamSQL: {exc}") from None


class WholeNumberField(IntegerField):
    """An IntegerField with one message for any bad input: text that is no whole number gets its range
    message (``message``) alone, where IntegerField said "Not a valid integer value." and then ran the
    range check on nothing, which added its own message to the first."""

    def __init__(self, label: str | None = None, validators: Any = None, *, message: str, **kwargs: Any):
        super().__init__(label, validators, **kwargs)
        self.message = message

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist or not str(valuelist[0]).strip():
            self.data = None
            return
        try:
            self.data = int(str(valuelist[0]).strip())
        except ValueError:
            self.data = None
            raise ValueError(self.message) from None

    def pre_validate(self, form: Any) -> None:
        if self.process_errors:
            raise StopValidation()  # already said; the validators would only repeat it


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


def split_patterns(text: str | None) -> tuple[str, ...]:
    """Channel patterns typed one per line or comma-separated; blank means every channel."""
    items = [part.strip() for line in (text or "").splitlines() for part in line.split(",")]
    return tuple(item for item in items if item) or ("*",)


def _patterns(form: Any, field: Any) -> None:
    for pattern in split_patterns(field.data):
        if len(pattern) > 256 or any(ch.isspace() for ch in pattern):
            raise ValidationError(f"Not a channel pattern: {pattern[:40]!r} (no spaces, at most 256 chars)")


class PanelForm(FlaskForm):
    """A FlaskForm whose fields only get posted text, and uploads only for its own FileFields.

    Flask-WTF fills a submitted form from every upload of a multipart body, or from the JSON of a JSON
    body: a file sent under a text field's name, or a number or object in JSON, reached validators that
    expect a string (``Length`` raised TypeError: a 500). Here such a field is simply missing, which its
    validators report. Keys that are not ASCII are never fields of ours and are dropped: FieldList took
    ``shards-²-name`` for an index (``str.isdigit``) that ``int()`` then refused."""

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            if formdata is not _Auto:  # given by the view (None, request.args)
                return formdata
            if request.method != "POST":
                return None
            posted = [(k, v) for k, v in request.form.items(multi=True) if isinstance(k, str) and k.isascii()]
            files = request.files.items(multi=True)
            posted += [(k, v) for k, v in files if isinstance(form._fields.get(k), FileField)]
            return MultiDict(posted)


class EmptyForm(PanelForm):
    """A button that changes something: nothing to fill in, but still CSRF-checked."""


class LoginForm(PanelForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=256)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)])


class AppCreateForm(PanelForm):
    key = StringField(
        "App key",
        filters=[_strip],
        validators=[Optional(), _name("app key")],
        description="Leave empty for a generated 32-character key.",
    )


class ConfirmForm(PanelForm):
    confirm = StringField("Type the name to confirm", validators=[DataRequired()])


class AppSettingsForm(PanelForm):
    """Blank = the broker-wide default (shown as the placeholder)."""

    history_max_length = IntegerField(
        "History: messages kept per channel", validators=[Optional(), NumberRange(min=0, max=10_000_000)]
    )
    history_max_age = IntegerField(
        "History: seconds kept", validators=[Optional(), NumberRange(min=0, max=365 * 86400)]
    )
    max_connections = IntegerField(
        "Connections (whole app)", validators=[Optional(), NumberRange(min=0, max=MAX_COUNT)]
    )
    max_connections_per_ip = IntegerField(
        "Connections per IP", validators=[Optional(), NumberRange(min=0, max=MAX_COUNT)]
    )
    max_subscriptions = IntegerField(
        "Subscriptions per connection", validators=[Optional(), NumberRange(min=0, max=MAX_COUNT)]
    )
    publish_rate = DecimalField(  # a bound also refuses "inf", which the store would keep as null (default)
        "Publishes per second per connection",
        places=None,
        validators=[Optional(), NumberRange(min=0, max=MAX_COUNT)],
    )
    max_message_size = IntegerField(
        "Largest message (bytes)", validators=[Optional(), NumberRange(min=1, max=64 << 20)]
    )
    send_queue_max_bytes = IntegerField(
        "Bytes queued for a slow reader before it is disconnected",
        validators=[Optional(), NumberRange(min=0, max=1 << 30)],
    )
    history_max_bytes = IntegerField(
        "History: bytes kept per channel (0 = no byte limit)",
        validators=[Optional(), NumberRange(min=0, max=MAX_COUNT)],
    )
    app_history_max_bytes = IntegerField(
        "History: bytes of the whole app in Redis (0 = unlimited)",
        validators=[Optional(), NumberRange(min=0, max=MAX_COUNT)],
    )
    max_publish_channels = IntegerField(
        "Channels one publish may name (0 = unlimited)",
        validators=[Optional(), NumberRange(min=0, max=MAX_COUNT)],
    )
    max_channel_length = IntegerField(
        "Longest channel name, UTF-8 bytes (0 = unlimited)",
        validators=[Optional(), NumberRange(min=0, max=MAX_COUNT)],
    )
    min_replicas = IntegerField(
        "Durability replicated: replicas that must confirm",
        validators=[Optional(), NumberRange(min=0, max=64)],
    )
    replication_timeout = DecimalField(
        "Durability replicated: seconds to wait for them",
        places=None,
        validators=[Optional(), NumberRange(min=0, max=3600)],
    )
    # A word, not a number: rendered and saved apart from FIELDS (App.durability).
    durability = SelectField(
        "Durability (when a publish is acknowledged)",
        choices=[("leader", "leader: the master holds it"), ("replicated", "replicated: WAIT saw replicas")],
        default="leader",
    )

    FIELDS = (
        "history_max_length",
        "history_max_age",
        "max_connections",
        "max_connections_per_ip",
        "max_subscriptions",
        "publish_rate",
        "max_message_size",
        "send_queue_max_bytes",
        "history_max_bytes",
        "app_history_max_bytes",
        "max_publish_channels",
        "max_channel_length",
        "min_replicas",
        "replication_timeout",
    )

    def values(self) -> dict[str, Any]:
        values = {}
        for name in self.FIELDS:
            value = getattr(self, name).data
            if value is not None and name in ("publish_rate", "replication_timeout"):
                value = float(value)
            values[name] = value
        return values


class MetricsLabelForm(PanelForm):
    """Empty = the app is labelled by its key on /metrics (or summed as "other", see ``metrics_apps``)."""

    metrics_label = StringField(
        "Label on /metrics", validators=[Optional(), _name("metrics label")], filters=[_strip]
    )


class RepublishRuleForm(PanelForm):
    expression = StringField(
        "StreamSQL",
        validators=[DataRequired(), Length(max=2048), _streamsql],
        render_kw={"spellcheck": "false"},
    )
    target = StringField("Target channel", validators=[DataRequired(), Length(max=256)])

    def validate_target(self, field: Any) -> None:
        # The brokers ignore a rule that feeds its FROM channel (it would loop): refuse it here.
        try:
            source = compile_filter(self.expression.data or "").channel
        except FilterError:
            return  # reported on the expression
        if source and source == (field.data or "").strip():
            raise ValidationError(f"A rule cannot republish {source!r} to itself; choose another channel.")


class RemoveRuleForm(PanelForm):
    index = IntegerField(validators=[DataRequired(message="missing rule"), NumberRange(min=1)])
    expression = HiddenField(validators=[DataRequired()])


class RoleForm(PanelForm):
    name = StringField("Role name", validators=[DataRequired(), _name("role name")])
    permissions = MultiCheckboxField("Permissions", choices=[SelectChoice(p, p) for p in PERMISSIONS])
    channels = TextAreaField(
        "Channel patterns",
        validators=[Length(max=8192), _patterns],
        description="Glob patterns, one per line or comma-separated; empty = every channel (*).",
        render_kw={"rows": 2, "spellcheck": "false"},
    )


class RoleEditForm(PanelForm):
    permissions = MultiCheckboxField("Permissions", choices=[SelectChoice(p, p) for p in PERMISSIONS])
    channels = TextAreaField(
        "Channel patterns",
        validators=[Length(max=8192), _patterns],
        render_kw={"rows": 2, "spellcheck": "false"},
    )


GRACE_MESSAGE = f"Enter a whole number of seconds from 0 to {MAX_GRACE_SECONDS} (30 days)."


class RotateForm(PanelForm):
    grace_seconds = WholeNumberField(
        "Grace period (seconds)",
        default=3600,
        message=GRACE_MESSAGE,
        validators=[
            InputRequired(message="Enter a number of seconds (0 = none)."),
            NumberRange(min=0, max=MAX_GRACE_SECONDS, message=GRACE_MESSAGE),
        ],
        description="How long the previous secret keeps working. 0 = it stops at once.",
    )


class ShardEntryForm(Form):
    name = StringField("Name", validators=[DataRequired(), _name("shard name")])
    url = StringField("Redis URL", validators=[DataRequired(), Length(max=1024)])


class ShardListForm(PanelForm):
    shards = FieldList(FormField(ShardEntryForm), min_entries=0, max_entries=64)


class ImportForm(PanelForm):
    file = FileField("apps.yaml file")
    text = TextAreaField("…or paste it", render_kw={"rows": 8, "spellcheck": "false"})
    dry_run = BooleanField("Only check it (change nothing)")


class UserCreateForm(PanelForm):
    name = StringField("User name", validators=[DataRequired(), _name("user name")])
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH)]
    )
    confirm = PasswordField("Repeat it", validators=[EqualTo("password", message="Passwords differ.")])


class PasswordForm(PanelForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    password = PasswordField(
        "New password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH)]
    )
    confirm = PasswordField("Repeat it", validators=[EqualTo("password", message="Passwords differ.")])


class ResetPasswordForm(PanelForm):
    password = PasswordField(
        "New password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH)]
    )


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search form changes nothing

    user = StringField("User", validators=[Optional(), Length(max=64)])
    action = StringField("Action", validators=[Optional(), Length(max=64)])
    app = StringField("App", validators=[Optional(), Length(max=64)])


class TailForm(FlaskForm):
    class Meta:
        csrf = False  # starts a read-only view

    app = SelectField("App", validators=[DataRequired()], choices=[])
    channel = StringField("Channel", validators=[Optional(), Length(max=256)])
    filter = StringField(
        "StreamSQL filter (optional)",
        filters=[_strip],
        validators=[Optional(), Length(max=2048), _streamsql],
        render_kw={"spellcheck": "false", "placeholder": "select * from `channel` where data.fps < 30"},
    )

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        if valid and not self.channel.data and not self.filter.data:
            self.channel.errors = ["Name a channel (or a filter with a FROM channel)."]
            return False
        return valid
