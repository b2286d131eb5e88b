"""Create an `admin` superuser on a development machine's first run and print its password once."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "In DEBUG, create the 'admin' superuser if no superuser exists, printing its password."

    def handle(self, *args: object, **options: object) -> None:
        if not settings.DEBUG:
            raise CommandError("ensure_dev_admin only runs with DEBUG=true; use createsuperuser.")
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("Sign in with your existing admin account (or sign up).")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the admin account. Sign in as: admin / {password}\n"
                "This password is shown once; change it in /admin/."
            )
        )
