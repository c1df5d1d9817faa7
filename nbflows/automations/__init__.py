"""Automations: rules that watch runs and pools (a run failed, is late, runs too long; a pool has
no worker) and act (notify by e-mail, signed webhook or any apprise URL; run or pause a
deployment; cancel a run).

One module per idea: `tables` (storage), `schemas` (wire models), `rules` (the rules
themselves), `triggers` (what turns a state change or a scheduler pass into outbox rows),
`outbox` (claiming and recording deliveries), `actions` (what a delivery does), `channels`
(e-mail, webhook, apprise), `templates` (the message), `delivery` (the server's delivery loop).
"""
