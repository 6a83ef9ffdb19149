# NixOS module: the same four services, supervised by systemd on a real host
# (Type=notify with the READY/WATCHDOG/STOPPING protocol the services speak),
# wired to a Redis from services.redis.servers and a Caddy from services.caddy.
{ self }:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.payment-platform;
  inherit (lib)
    mkEnableOption
    mkOption
    mkIf
    types
    ;
  packages = self.packages.${pkgs.stdenv.hostPlatform.system};
  redisUrl = "redis://127.0.0.1:${toString cfg.redis.port}";
  redisUnit = "redis-${cfg.redis.name}.service";

  # Settings every unit shares: notify protocol, watchdog, no fixed user,
  # secrets from a file kept out of the store.
  mkUnit =
    {
      description,
      package,
      environment,
      needsSecrets ? false,
      needsRedis ? true,
    }:
    {
      inherit description;
      # Not development: the services refuse the repository's dev JWT_SECRET.
      environment = environment // {
        PLATFORM_ENV = "production";
      };
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ] ++ lib.optional needsRedis redisUnit;
      requires = lib.optional needsRedis redisUnit;
      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = lib.getExe package;
        WatchdogSec = cfg.watchdogSec;
        Restart = "on-failure";
        RestartSec = "1s";
        # Longer than the services' own drain (SHUTDOWN_TIMEOUT_SECS, 10 s).
        TimeoutStopSec = "15s";
        DynamicUser = true;
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
      }
      // lib.optionalAttrs (needsSecrets && cfg.environmentFile != null) {
        EnvironmentFile = cfg.environmentFile;
      };
    };
in
{
  options.services.payment-platform = {
    enable = mkEnableOption "the payment platform (auth-api, core-api, psp-connector, psp-sandbox, webhook-dispatcher)";

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/payment-platform.env";
      description = "File with `JWT_SECRET=…` (at least 32 bytes), read by auth-api and core-api. Keep it out of the Nix store.";
    };

    usersFile = mkOption {
      type = types.path;
      description = "TOML file of users (username, merchant, argon2id PHC hash) for auth-api. The repository's config/users.toml is for development only.";
    };

    tokenTtlSecs = mkOption {
      type = types.ints.positive;
      default = 30;
      description = "Lifetime of issued tokens (AUTH_TOKEN_TTL_SECS).";
    };

    watchdogSec = mkOption {
      type = types.str;
      default = "30s";
      description = "systemd WatchdogSec for every unit; services ping at half of it while healthy.";
    };

    gatewayPort = mkOption {
      type = types.port;
      default = 8000;
      description = "Port Caddy listens on (PLATFORM_PORT), on every interface.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open gatewayPort in the firewall, so the gateway is reachable from other hosts. Every service port stays on loopback.";
    };

    authApiPort = mkOption {
      type = types.port;
      default = 7101;
      description = "Port auth-api listens on, on loopback (AUTH_API_ADDR).";
    };

    coreApi = {
      basePort = mkOption {
        type = types.port;
        default = 7200;
        description = "Replica N of core-api listens on basePort + N.";
      };
      replicas = mkOption {
        type = types.ints.positive;
        default = 2;
        description = "Number of core-api units (payment-core-api-N); Caddy balances over all of them.";
      };
    };

    pspConnector = {
      basePort = mkOption {
        type = types.port;
        default = 7300;
        description = "Replica N's health endpoints listen on basePort + N.";
      };
      replicas = mkOption {
        type = types.ints.positive;
        default = 2;
        description = "Number of psp-connector units (payment-psp-connector-N), consumers of one Redis consumer group.";
      };
      pspUrls = mkOption {
        type = types.str;
        default = lib.concatStringsSep "," (
          lib.mapAttrsToList (name: port: "${name}@http://127.0.0.1:${toString port}") cfg.sandbox.psps
        );
        defaultText = "the local sandboxes, psp-a@http://127.0.0.1:7401,psp-b@http://127.0.0.1:7402";
        description = "PSP_URLS: the PSPs charges are sent to, name@url, comma-separated, in the order a payment without a routing rule tries them.";
      };
      routingFile = mkOption {
        type = types.nullOr types.path;
        default = ../config/routing.toml;
        defaultText = "the repository's config/routing.toml";
        description = "ROUTING_FILE: TOML routing rules (currency, amount, brand, merchant to an ordered list of PSPs); null tries the PSPs in pspUrls order.";
      };
    };

    webhookDispatcher = {
      basePort = mkOption {
        type = types.port;
        default = 7600;
        description = "Replica N of webhook-dispatcher serves its health endpoints on basePort + N.";
      };
      replicas = mkOption {
        type = types.ints.unsigned;
        default = 1;
        description = "Number of webhook-dispatcher units (payment-webhook-dispatcher-N), consumers of one Redis consumer group; 0 delivers no webhooks. Webhook endpoints may have any http(s) host (WEBHOOK_PUBLIC_URLS is set for core-api).";
      };
    };

    sandbox = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Run the PSP sandboxes (disable when pspConnector.pspUrls points at real PSPs).";
      };
      psps = mkOption {
        type = types.attrsOf types.port;
        default = {
          psp-a = 7401;
          psp-b = 7402;
        };
        description = "The sandboxes to run, PSP name to the port it listens on, on loopback (PSP_SANDBOX_NAME, PSP_SANDBOX_ADDR); one unit payment-<name> each.";
      };
    };

    redis = {
      name = mkOption {
        type = types.str;
        default = "payment-platform";
        description = "Name of the services.redis.servers entry (unit redis-<name>.service).";
      };
      port = mkOption {
        type = types.port;
        default = 6390;
        description = "Port of the Redis server, on loopback.";
      };
    };

    caddy.enable = mkOption {
      type = types.bool;
      default = true;
      description = "Serve the gateway with services.caddy using the project's Caddyfile.";
    };
  };

  config = mkIf cfg.enable {
    services.redis.servers.${cfg.redis.name} = {
      enable = true;
      port = cfg.redis.port;
      bind = "127.0.0.1";
      appendOnly = true;
      appendFsync = "everysec";
    };

    systemd.services =
      {
        payment-auth-api = mkUnit {
          description = "Payment platform: auth-api";
          package = packages.auth-api;
          needsSecrets = true;
          environment = {
            AUTH_API_ADDR = "127.0.0.1:${toString cfg.authApiPort}";
            # Interpolated, not toString: a path in the store stays a
            # reference, so the file is part of the system closure.
            AUTH_USERS_FILE = "${cfg.usersFile}";
            AUTH_TOKEN_TTL_SECS = toString cfg.tokenTtlSecs;
            REDIS_URL = redisUrl;
          };
        };
      }
      // lib.optionalAttrs cfg.sandbox.enable (
        lib.mapAttrs' (
          name: port:
          lib.nameValuePair "payment-${name}" (mkUnit {
            description = "Payment platform: PSP sandbox ${name}";
            package = packages.psp-sandbox;
            needsRedis = false;
            environment = {
              PSP_SANDBOX_NAME = name;
              PSP_SANDBOX_ADDR = "127.0.0.1:${toString port}";
            };
          })
        ) cfg.sandbox.psps
      )
      // lib.listToAttrs (
        lib.genList (n: {
          name = "payment-core-api-${toString n}";
          value = mkUnit {
            description = "Payment platform: core-api replica ${toString n}";
            package = packages.core-api;
            needsSecrets = true;
            environment = {
              CORE_API_ADDR = "127.0.0.1:${toString (cfg.coreApi.basePort + n)}";
              REDIS_URL = redisUrl;
              # A deployment delivers webhooks to its merchants' servers.
              WEBHOOK_PUBLIC_URLS = "true";
            };
          };
        }) cfg.coreApi.replicas
      )
      // lib.listToAttrs (
        lib.genList (n: {
          name = "payment-psp-connector-${toString n}";
          value = mkUnit {
            description = "Payment platform: psp-connector replica ${toString n}";
            package = packages.psp-connector;
            environment = {
              PSP_CONNECTOR_ADDR = "127.0.0.1:${toString (cfg.pspConnector.basePort + n)}";
              CONNECTOR_CONSUMER_NAME = "psp-connector-${toString n}";
              PSP_URLS = cfg.pspConnector.pspUrls;
              REDIS_URL = redisUrl;
            }
            // lib.optionalAttrs (cfg.pspConnector.routingFile != null) {
              # Interpolated: the file becomes part of the system closure.
              ROUTING_FILE = "${cfg.pspConnector.routingFile}";
            };
          };
        }) cfg.pspConnector.replicas
      )
      // lib.listToAttrs (
        lib.genList (n: {
          name = "payment-webhook-dispatcher-${toString n}";
          value = mkUnit {
            description = "Payment platform: webhook-dispatcher replica ${toString n}";
            package = packages.webhook-dispatcher;
            environment = {
              WEBHOOK_DISPATCHER_ADDR = "127.0.0.1:${toString (cfg.webhookDispatcher.basePort + n)}";
              WEBHOOK_CONSUMER_NAME = "webhook-dispatcher-${toString n}";
              REDIS_URL = redisUrl;
            };
          };
        }) cfg.webhookDispatcher.replicas
      )
      // lib.optionalAttrs cfg.caddy.enable {
        caddy.environment = {
          PLATFORM_PORT = toString cfg.gatewayPort;
          # Caddy runs in /: the Caddyfile's default (dashboard/public,
          # relative) would answer 404 for /_dashboard.
          DASHBOARD_DIR = "${../dashboard/public}";
          AUTH_API_UPSTREAMS = "127.0.0.1:${toString cfg.authApiPort}";
          CORE_API_UPSTREAMS = lib.concatMapStringsSep " " (
            n: "127.0.0.1:${toString (cfg.coreApi.basePort + n)}"
          ) (lib.genList (n: n) cfg.coreApi.replicas);
        };
      };

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall cfg.gatewayPort;

    services.caddy = mkIf cfg.caddy.enable {
      enable = true;
      configFile = ../caddy/Caddyfile;
      adapter = "caddyfile";
      # The Caddyfile turns the admin API off, which `caddy reload` needs.
      enableReload = false;
    };
  };
}
