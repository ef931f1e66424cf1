# Bakes nodekeeper into an Azure node image (azure-arm builder): the marketplace
# image of the chosen source, plus the nodekeeper package installed, configured
# and enabled by image/scripts/install.sh, generalized and captured as a managed
# image. Variable names follow kubernetes-sigs/image-builder's Azure templates
# (azure_location, image_publisher/offer/sku, build_name, ...) so the same
# values can come from its var files; a CAPZ image built with image-builder
# includes nodekeeper through the Ansible role in image/ansible instead
# (see image/README.md).
#
#   packer init image/packer
#   packer build -only='nodekeeper.azure-arm.ubuntu-2204' \
#     -var-file=image/packer/ubuntu-2204.pkrvars.hcl \
#     -var subscription_id=... -var resource_group_name=... \
#     -var nodekeeper_deb=dist/nodekeeper_1.2.3_amd64.deb image/packer
#
# (azure-arm.azurelinux-3 takes nodekeeper_rpm instead.)

packer {
  required_plugins {
    azure = {
      version = ">= 2.1.8"
      source  = "github.com/hashicorp/azure"
    }
  }
}

# Where and as whom to build (as in image-builder's azure-config.json).
variable "subscription_id" {
  type = string
}
variable "tenant_id" {
  type    = string
  default = ""
}
variable "client_id" {
  type        = string
  default     = ""
  description = "Service principal; empty: the Azure CLI's login is used."
}
variable "client_secret" {
  type      = string
  default   = ""
  sensitive = true
}
variable "azure_location" {
  type    = string
  default = "westus2"
}
variable "resource_group_name" {
  type        = string
  description = "Resource group that receives the managed image."
}
variable "vm_size" {
  type    = string
  default = "Standard_D4s_v5"
}
variable "build_timestamp" {
  type    = string
  default = ""
}
variable "build_name" {
  type    = string
  default = "nodekeeper"
}
variable "ssh_username" {
  type    = string
  default = "packer"
}
variable "private_virtual_network_with_public_ip" {
  type    = bool
  default = false
}
variable "virtual_network_name" {
  type    = string
  default = ""
}
variable "virtual_network_resource_group_name" {
  type    = string
  default = ""
}
variable "virtual_network_subnet_name" {
  type    = string
  default = ""
}

# The two sources' marketplace images (image-builder's ubuntu-2204-gen2 and
# azurelinux-3-gen2 values by default).
variable "ubuntu_2204_image" {
  type = object({
    publisher = string
    offer     = string
    sku       = string
    version   = string
  })
  default = {
    publisher = "Canonical"
    offer     = "0001-com-ubuntu-server-jammy"
    sku       = "22_04-lts-gen2"
    version   = "latest"
  }
}
variable "azurelinux_3_image" {
  type = object({
    publisher = string
    offer     = string
    sku       = string
    version   = string
  })
  default = {
    publisher = "MicrosoftCBLMariner"
    offer     = "azure-linux-3"
    sku       = "azure-linux-3-gen2"
    version   = "latest"
  }
}

# What goes into the image.
variable "nodekeeper_deb" {
  type        = string
  default     = ""
  description = "Path of the nodekeeper .deb (make deb) for the Ubuntu source."
}
variable "nodekeeper_rpm" {
  type        = string
  default     = ""
  description = "Path of the nodekeeper .rpm (make rpm) for the Azure Linux source."
}
variable "nodekeeper_config_override" {
  type        = string
  default     = ""
  description = "YAML for /etc/nodekeeper/config.d/50-image.yaml; empty: none."
}
variable "deprovision" {
  type        = bool
  default     = true
  description = "Generalize the VM (waagent -deprovision+user) before the capture."
}

locals {
  build_timestamp = var.build_timestamp != "" ? var.build_timestamp : formatdate("YYYYMMDDhhmmss", timestamp())
  use_cli_auth    = var.client_id == ""
  azure_tags = {
    build_timestamp    = local.build_timestamp
    creationTimestamp  = timestamp()
    image_builder      = "nodekeeper"
    nodekeeper_package = local.nodekeeper_package
  }
  nodekeeper_package = join(",", [for p in [var.nodekeeper_deb, var.nodekeeper_rpm] : basename(p) if p != ""])
}

source "azure-arm" "ubuntu-2204" {
  subscription_id    = var.subscription_id
  tenant_id          = var.tenant_id != "" ? var.tenant_id : null
  client_id          = local.use_cli_auth ? null : var.client_id
  client_secret      = local.use_cli_auth ? null : var.client_secret
  use_azure_cli_auth = local.use_cli_auth

  image_publisher = var.ubuntu_2204_image.publisher
  image_offer     = var.ubuntu_2204_image.offer
  image_sku       = var.ubuntu_2204_image.sku
  image_version   = var.ubuntu_2204_image.version
  os_type         = "Linux"

  location                               = var.azure_location
  vm_size                                = var.vm_size
  ssh_username                           = var.ssh_username
  private_virtual_network_with_public_ip = var.private_virtual_network_with_public_ip
  virtual_network_name                   = var.virtual_network_name
  virtual_network_resource_group_name    = var.virtual_network_resource_group_name
  virtual_network_subnet_name            = var.virtual_network_subnet_name

  managed_image_name                = "${var.build_name}-ubuntu-2204-${local.build_timestamp}"
  managed_image_resource_group_name = var.resource_group_name
  azure_tags                        = merge(local.azure_tags, { distribution = "ubuntu", distribution_version = "2204" })
}

source "azure-arm" "azurelinux-3" {
  subscription_id    = var.subscription_id
  tenant_id          = var.tenant_id != "" ? var.tenant_id : null
  client_id          = local.use_cli_auth ? null : var.client_id
  client_secret      = local.use_cli_auth ? null : var.client_secret
  use_azure_cli_auth = local.use_cli_auth

  image_publisher = var.azurelinux_3_image.publisher
  image_offer     = var.azurelinux_3_image.offer
  image_sku       = var.azurelinux_3_image.sku
  image_version   = var.azurelinux_3_image.version
  os_type         = "Linux"

  location                               = var.azure_location
  vm_size                                = var.vm_size
  ssh_username                           = var.ssh_username
  private_virtual_network_with_public_ip = var.private_virtual_network_with_public_ip
  virtual_network_name                   = var.virtual_network_name
  virtual_network_resource_group_name    = var.virtual_network_resource_group_name
  virtual_network_subnet_name            = var.virtual_network_subnet_name

  managed_image_name                = "${var.build_name}-azurelinux-3-${local.build_timestamp}"
  managed_image_resource_group_name = var.resource_group_name
  azure_tags                        = merge(local.azure_tags, { distribution = "azurelinux", distribution_version = "3" })
}

build {
  name    = "nodekeeper"
  sources = ["source.azure-arm.ubuntu-2204", "source.azure-arm.azurelinux-3"]

  # As image-builder does: let the first boot's cloud-init finish first.
  provisioner "shell" {
    inline = [
      "while [ ! -f /var/lib/cloud/instance/boot-finished ]; do echo 'Waiting for cloud-init...'; sleep 1; done",
    ]
  }

  provisioner "file" {
    source      = source.name == "azurelinux-3" ? var.nodekeeper_rpm : var.nodekeeper_deb
    destination = source.name == "azurelinux-3" ? "/tmp/nodekeeper.rpm" : "/tmp/nodekeeper.deb"
  }

  provisioner "file" {
    source      = "${path.root}/../scripts/install.sh"
    destination = "/tmp/nodekeeper-install.sh"
  }

  # The single install step. The override travels base64-encoded so that any
  # YAML survives the shell.
  provisioner "shell" {
    inline = [
      "sudo NODEKEEPER_CONFIG_OVERRIDE_B64='${base64encode(var.nodekeeper_config_override)}' bash /tmp/nodekeeper-install.sh ${source.name == "azurelinux-3" ? "/tmp/nodekeeper.rpm" : "/tmp/nodekeeper.deb"}",
      "rm -f /tmp/nodekeeper.deb /tmp/nodekeeper.rpm /tmp/nodekeeper-install.sh",
    ]
  }

  # Generalize for capture, as Azure documents for Linux images.
  provisioner "shell" {
    skip_clean = true
    inline = var.deprovision ? [
      "sudo /usr/sbin/waagent -force -deprovision+user && export HISTSIZE=0 && sync",
    ] : ["true"]
  }

  post-processor "manifest" {
    output     = "manifest.json"
    strip_path = true
    custom_data = {
      build_timestamp = local.build_timestamp
      nodekeeper      = local.nodekeeper_package
    }
  }
}
