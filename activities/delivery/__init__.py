"""Delivering written notices: letters for the post room, SMS, e-mail (docs/delivery.md).

channels.py (what a channel is), letters.py, sms.py, smtp.py (the channels),
rendering.py (the renderer the drainer is given), drainer.py (DeliveryDrainer and the
visible state per notice, `delivery_states`).
"""
