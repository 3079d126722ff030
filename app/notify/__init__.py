"""Build notifications: which transitions to announce (pure), and the channels that carry them (Slack, SNS,
SES, Discord; listed once in app.notify.channels) behind a background dispatcher that never delays or fails a
hook."""
