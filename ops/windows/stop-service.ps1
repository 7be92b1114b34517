# stop-service.ps1: stop a Flowstudio service (Ctrl-C first: a worker hands its in-flight steps back).
param([Parameter(Mandatory = $true)][string]$Name, [string]$Nssm = "nssm.exe")
$ErrorActionPreference = "Stop"
& $Nssm stop $Name
