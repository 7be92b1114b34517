# start-service.ps1: start a Flowstudio service installed by install-service.ps1.
param([Parameter(Mandatory = $true)][string]$Name, [string]$Nssm = "nssm.exe")
$ErrorActionPreference = "Stop"
& $Nssm start $Name
