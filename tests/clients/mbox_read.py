"""Reads an mbox file with Python's mailbox module and prints one JSON object per message:
the From_ line's sender, Subject, flags and body. Used to check Petrel's mbox delivery with a
reader nobody here wrote."""
import json
import mailbox
import sys

box = mailbox.mbox(sys.argv[1], create=False)
box.lock()
try:
    for msg in box:
        body = msg.get_payload(decode=False)
        print(json.dumps({
            "from_line": msg.get_from(),
            "subject": msg["Subject"],
            "flags": msg.get_flags(),
            "body": body,
        }))
finally:
    box.unlock()
