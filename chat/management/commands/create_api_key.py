"""Create an API key for a user; the key is the last line of the output, for scripts."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat import errors
from chat.services.api_keys import api_key_create


class Command(BaseCommand):
    help = "Create an API key for USERNAME and print it (shown once) as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="command line", help="A name to recognise it by.")

    def handle(self, *args: object, username: str, name: str, **options: object) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"There is no user {username!r}.") from None
        try:
            key, raw = api_key_create(user_id=user.pk, name=name)
        except errors.ChatError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Created API key “{key.name}” for {username}; it is shown only once:")
        self.stdout.write(raw)
