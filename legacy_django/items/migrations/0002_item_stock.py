"""``Item.stock``: the sum of the item's options' stock, backfilled here and kept equal by every write."""

from django.db import migrations, models

BACKFILL = """
UPDATE items_item SET stock = COALESCE(
    (SELECT SUM(o.stock) FROM items_itemoption o WHERE o.item_id = items_item.id), 0
)
"""


class Migration(migrations.Migration):
    dependencies = [("items", "0001_initial")]

    operations = [
        migrations.AddField(model_name="item", name="stock", field=models.PositiveIntegerField(default=0)),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
