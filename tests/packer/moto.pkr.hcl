# A real amazon-ebs build aimed at a local moto server; see README.md beside this file.
#
# communicator = "none": moto starts no machine, so nothing could be reached over SSH. The build still
# walks the plugin's whole EC2 path: launch the source AMI, stop it, create the image, wait for it,
# tag it, terminate the instance and delete the temporary key pair and security group.

packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = "= 1.3.4"
    }
  }
}

variable "ami_id" {
  type        = string
  description = "Source AMI; it must exist in moto in var.region."
}

variable "region" {
  type    = string
  default = "us-west-2"
}

variable "endpoint" {
  type        = string
  description = "moto's URL, e.g. http://127.0.0.1:5000. The plugin ignores AWS_ENDPOINT_URL*."
}

variable "ami_name_prefix" {
  type    = string
  default = "packer-moto"
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "fail" {
  type        = bool
  default     = false
  description = "Fail the build in a provisioner, after the instance is up (packer then cleans up)."
}

variable "sleep_seconds" {
  type        = number
  default     = 0
  description = "Sleep this long in a provisioner, with the instance up: a window to send SIGTERM."

  validation {
    condition     = var.sleep_seconds >= 0 && floor(var.sleep_seconds) == var.sleep_seconds
    error_message = "The sleep_seconds value must be a whole number of seconds, 0 or more."
  }
}

source "amazon-ebs" "moto" {
  region                     = var.region
  custom_endpoint_ec2        = var.endpoint
  skip_credential_validation = true
  skip_metadata_api_check    = true
  skip_region_validation     = true

  source_ami    = var.ami_id
  instance_type = "t3.micro"
  communicator  = "none"

  # timestamp() alone has 1 s resolution and builds against moto take less: a second build in the same
  # second would fail prevalidation ("AMI Name ... is used by an existing AMI"), hence the random part.
  ami_name = "${var.ami_name_prefix}-${formatdate("YYYYMMDDhhmmss", timestamp())}-${substr(uuidv4(), 0, 8)}"
  tags     = var.tags
}

build {
  sources = ["source.amazon-ebs.moto"]

  # shell-local is built into packer and runs on this machine, so it needs no communicator.
  provisioner "shell-local" {
    inline = concat(
      # Sleep in 1 s steps while the provisioner's process lives: packer does not kill this script when
      # it is cancelled, and an orphaned `sleep N` would hold packer's stdout open for up to N seconds.
      var.sleep_seconds > 0 ? [
        "echo sleeping ${var.sleep_seconds}s",
        "parent=$PPID; i=0; while [ $i -lt ${var.sleep_seconds} ] && kill -0 $parent 2>/dev/null; do sleep 1; i=$((i + 1)); done",
      ] : [],
      var.fail ? ["echo failing on purpose: var.fail is true", "exit 1"] : [],
      ["echo provisioner done"],
    )
  }
}
