from django.db import migrations, models


class Migration(migrations.Migration):
    """Apart from 0006: PostgreSQL cannot alter a table while the foreign-key checks of rows that
    0006 moved or deleted are still pending in the same transaction."""

    dependencies = [
        ('agency', '0006_client_email_normalized'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='client',
            name='agency_client_unique_email_ci',
        ),
        migrations.AddConstraint(
            model_name='client',
            constraint=models.UniqueConstraint(fields=('email_normalized',), name='agency_client_unique_email_normalized'),
        ),
        migrations.AddConstraint(
            model_name='client',
            constraint=models.CheckConstraint(condition=models.Q(('email_normalized', ''), _negated=True), name='agency_client_email_normalized_set'),
        ),
    ]
