from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('credentials', '0006_usage_record_retention'),
    ]

    operations = [
        migrations.AddField(
            model_name='gatewaysettings',
            name='model_resolution',
            field=models.CharField(choices=[('fallback', 'fallback (send the newest listed model of the family)'), ('strict', 'strict (answer 404 for a model no credential lists)')], default='fallback', help_text="What to do with a model id none of the key's credentials lists: send the newest listed model of its family (or the fallback model), or refuse with a 404.", max_length=16),
        ),
        migrations.AddField(
            model_name='gatewaysettings',
            name='fallback_model',
            field=models.CharField(blank=True, help_text='Model sent when the requested family has nothing listed (a Kiro id such as claude-sonnet-4.5, a client id or a custom model id). Blank, or not listed: the newest listed sonnet.', max_length=256),
        ),
    ]
