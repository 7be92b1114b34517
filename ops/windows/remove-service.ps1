# remove-service.ps1: stop and remove a Flowstudio service installed by install-service.ps1.
param([Parameter(Mandatory = $true)][string]$Name, [string]$Nssm = "nssm.exe")
$ErrorActionPreference = "Stop"
& $Nssm stop $Name 2>$null
& $Nssm remove $Name confirm
