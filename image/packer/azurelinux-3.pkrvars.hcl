# Azure Linux 3 (Gen2), as image-builder's azurelinux-3-gen2 var file.
# packer build -only='nodekeeper.azure-arm.azurelinux-3' -var-file=this ...
build_name = "nodekeeper"
azurelinux_3_image = {
  publisher = "MicrosoftCBLMariner"
  offer     = "azure-linux-3"
  sku       = "azure-linux-3-gen2"
  version   = "latest"
}
