"""Written notices (书面告知) as documents: the letter (PDF), the SMS and the e-mail of each
notice, rendered from the domain's facts (domain/notice_facts.py) through template files a
bureau can edit (documents/templates/notices/, docs/notices.md)."""
