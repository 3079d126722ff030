"""What the validation Job runs against a freshly built AMI (docs/validation.md).

`python -m app.validation boot-check` is the built-in boot check. It runs in the hook's own image, so this
package stands alone: it imports nothing from the rest of `app` except the bounded boto3 config
(`app.aws.aws_clients`) and the tag names (`app.model.tags`).
"""
