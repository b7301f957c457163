"""The outbox of item events and each item's event version (ADR 0018)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("items", "0002_item_stock"),
    ]

    operations = [
        migrations.AddField(
            model_name="item",
            name="changed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="item",
            name="event_version",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.CreateModel(
            name="OutboxEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("event_id", models.CharField(max_length=32, unique=True)),
                ("type", models.CharField(max_length=40)),
                ("key", models.BigIntegerField()),
                ("version", models.PositiveBigIntegerField()),
                ("payload", models.TextField()),
                ("occurred_at", models.DateTimeField()),
                ("published_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "db_table": "items_outboxevent",
                "indexes": [
                    models.Index(
                        condition=models.Q(("published_at__isnull", True)),
                        fields=["id"],
                        name="outbox_unpublished_idx",
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(fields=("key", "version"), name="outbox_key_version")
                ],
            },
        ),
    ]
