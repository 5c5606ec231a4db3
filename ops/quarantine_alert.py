"""Post a message to a webhook (chat, pager, ticket system) whenever a batch is quarantined.

    PREFECT_API_URL=http://127.0.0.1:4200/api python ops/quarantine_alert.py https://chat.example/hooks/T0/B0

Creates (or replaces) a ``CustomWebhookNotificationBlock`` named ``affectflow-quarantine`` posting
``{"text": ..., "title": ...}`` to URL, and an automation ``affectflow-quarantine-alert`` that sends it on
every ``affectflow.batch.quarantined`` event, naming the batch, its dataset and the reasons.
"""

from __future__ import annotations

import argparse

from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

NAME = "affectflow-quarantine-alert"
BODY = ("Batch {{ event.payload.batch }} ({{ event.payload.clips }} clips) of dataset {{ event.payload.dataset }} "
        "was quarantined: {{ event.payload.reasons | join('; ') }}. Its report is on the Artifacts page "
        "({{ event.payload.dataset }}-quarantine-report) and in the quarantine folder.")


def install(url: str) -> Automation:
    block = CustomWebhookNotificationBlock(name="affectflow", url=url,
                                           json_data={"title": "{{subject}}", "text": "{{body}}"})
    block_id = block.save("affectflow-quarantine", overwrite=True)
    try:
        Automation.read(name=NAME).delete()
    except ValueError:  # not there yet
        pass
    return Automation(
        name=NAME, description="Notify the webhook when the ingest quarantines a batch.",
        trigger=EventTrigger(expect={"affectflow.batch.quarantined"},
                             match={"prefect.resource.id": "affectflow.dataset.*"},
                             posture=Posture.Reactive, threshold=1, within=0),
        actions=[SendNotification(block_document_id=block_id, subject="affectflow: batch quarantined", body=BODY)],
    ).create()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the webhook to POST to")
    print(install(parser.parse_args().url).id)
