# install-service.ps1: install a frozen flowstudio (ops/windows/flowstudio.spec) as a Windows service
# with NSSM: restart on exit, stdout/stderr logs rotated daily or at 10 MB, environment from a file.
#   .\install-service.ps1 -Name FlowstudioWorker1 -Exe C:\flowstudio\flowstudio.exe `
#       -Arguments "worker --concurrency 64" -EnvFile C:\flowstudio\flowstudio.env
# The env file holds KEY=VALUE lines (SECRET_KEY, DATABASE_URL, AMQP_URL...): restrict it to the
# service account and Administrators (icacls), it carries credentials.
param(
    [Parameter(Mandatory = $true)][string]$Name,
    [Parameter(Mandatory = $true)][string]$Exe,
    [string]$Arguments = "worker",
    [Parameter(Mandatory = $true)][string]$EnvFile,
    [string]$LogDir = "$env:ProgramData\Flowstudio\logs",
    [string]$Nssm = "nssm.exe"
)
$ErrorActionPreference = "Stop"
if (-not (Test-Path $Exe)) { throw "not found: $Exe" }
if (-not (Test-Path $EnvFile)) { throw "not found: $EnvFile" }
New-Item -ItemType Directory -Force -Path $LogDir | Out-Null
$envLines = Get-Content $EnvFile | Where-Object { $_ -match '^\s*[A-Za-z_][A-Za-z0-9_]*=' -and $_ -notmatch '^\s*#' }
$envLines += "FLOWSTUDIO_ENV_FILE="

& $Nssm install $Name $Exe $Arguments
& $Nssm set $Name AppDirectory (Split-Path $Exe)
& $Nssm set $Name AppEnvironmentExtra $envLines
& $Nssm set $Name Start SERVICE_AUTO_START
# restart whenever it exits, after 2 s; NSSM stops it with Ctrl-C first (the worker hands its
# in-flight steps back), then kills it after 45 s
& $Nssm set $Name AppExit Default Restart
& $Nssm set $Name AppRestartDelay 2000
& $Nssm set $Name AppStopMethodConsole 45000
& $Nssm set $Name AppStdout (Join-Path $LogDir "$Name.log")
& $Nssm set $Name AppStderr (Join-Path $LogDir "$Name.log")
& $Nssm set $Name AppRotateFiles 1
& $Nssm set $Name AppRotateOnline 1
& $Nssm set $Name AppRotateSeconds 86400
& $Nssm set $Name AppRotateBytes 10485760
Write-Host "installed $Name; start it with .\start-service.ps1 -Name $Name"
