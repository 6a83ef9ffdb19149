{
  description = "Payment platform: a reproducible local stack (auth-api, core-api, psp-connector, psp-sandbox, webhook-dispatcher, Redis, Caddy) supervised by process-compose";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      # Written out rather than taken from flake-utils: one input only.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      version = (lib.importTOML ./Cargo.toml).workspace.package.version;

      services = {
        auth-api = "Issues 30-second merchant tokens (HS256 JWT)";
        core-api = "Accepts, records and queues payment transactions";
        psp-connector = "Charges queued transactions at the Payment Service Provider";
        psp-sandbox = "Local stand-in for a Payment Service Provider, with test cards";
        webhook-dispatcher = "Delivers signed, retried webhooks for every transaction event, and webhook-sink, the local receiver";
      };

      perSystem =
        pkgs:
        let
          fs = lib.fileset;

          # Only what the build and tests read: no target/, no .data/, no result
          # links. Every workspace member of Cargo.toml must be in sourcePaths,
          # with every file a crate include_str!s. tests/tests/nix_flake.rs
          # reads both lists, copies exactly that set and runs cargo metadata
          # and cargo check on it: keep them lists of plain paths.
          sourcePaths = [
            ./Cargo.toml
            ./Cargo.lock
            ./flake.nix
            ./flake.lock
            ./nix
            ./services
            ./tests
            ./bench
            ./caddy
            ./config
            ./scripts
            ./process-compose.yaml
            ./process-compose.override.yaml
            ./tools.versions
            ./dashboard
            ./README.md
          ];
          sourceExcluded = [
            (fs.maybeMissing ./dashboard/tests/node_modules)
          ];
          src = fs.toSource {
            root = ./.;
            fileset = fs.difference (fs.unions sourcePaths) (fs.unions sourceExcluded);
          };

          # What `nix run` needs at run time, next to the binaries.
          runtimeFiles = fs.toSource {
            root = ./.;
            fileset = fs.unions [
              ./process-compose.yaml
              ./caddy/Caddyfile
              ./config/users.toml
              ./config/routing.toml
              ./dashboard/public
            ];
          };

          # One vendor directory of Cargo.lock, shared by every derivation.
          cargoDeps = pkgs.rustPlatform.importCargoLock { lockFile = ./Cargo.lock; };

          mkService =
            name: description:
            pkgs.rustPlatform.buildRustPackage {
              pname = name;
              inherit version src cargoDeps;
              cargoBuildFlags = [
                "-p"
                name
              ];
              cargoTestFlags = [
                "-p"
                name
              ];
              # The crate's tests start a real redis-server on loopback.
              nativeCheckInputs = [ pkgs.redis ];
              __darwinAllowLocalNetworking = true;
              meta = {
                inherit description;
                mainProgram = name;
              };
            };

          servicePackages = lib.mapAttrs mkService services;

          platform = pkgs.writeShellApplication {
            name = "payment-platform";
            # GNU coreutils: the same mkdir and realpath on macOS as on Linux.
            runtimeInputs = (lib.attrValues servicePackages) ++ [
              pkgs.process-compose
              pkgs.redis
              pkgs.caddy
              pkgs.coreutils
            ];
            text = ''
              # Data (Redis' append-only file) stays outside the store, in
              # ./.data of the directory `nix run` was started from. Created
              # first, so realpath needs no GNU-only -m.
              mkdir -p "''${PLATFORM_DATA_DIR:-.data}"
              PLATFORM_DATA_DIR="$(realpath "''${PLATFORM_DATA_DIR:-.data}")"
              export PLATFORM_DATA_DIR
              # The yaml names config/ and caddy/ relative to its directory.
              cd ${runtimeFiles} || exit 1
              exec process-compose up --config process-compose.yaml "$@"
            '';
            meta = {
              description = "The whole payment platform under process-compose";
              mainProgram = "payment-platform";
            };
          };

          # Builds the workspace once, then runs a command in it.
          mkWorkspaceCheck =
            name: args:
            pkgs.rustPlatform.buildRustPackage (
              {
                pname = name;
                inherit version src cargoDeps;
                __darwinAllowLocalNetworking = true;
              }
              // args
            );
        in
        {
          packages = servicePackages // {
            default = platform;
          };

          apps.default = {
            type = "app";
            program = lib.getExe platform;
            meta.description = "Start the whole payment platform (process-compose, Redis, Caddy, four services)";
          };

          devShells.default = pkgs.mkShell {
            packages = [
              pkgs.cargo
              pkgs.rustc
              pkgs.clippy
              pkgs.rustfmt
              pkgs.rust-analyzer
              pkgs.cargo-nextest
              pkgs.process-compose
              pkgs.redis
              pkgs.caddy
              pkgs.httpie
              pkgs.jq
              # scripts/dev-reload asks process-compose's API with curl.
              pkgs.curl
              pkgs.watchexec
              # `cargo run --release -p bench` drives HTTP load with wrk
              # (redis-benchmark comes with redis).
              pkgs.wrk
              # `cargo run --release -p bench -- instructions` counts with callgrind.
              pkgs.valgrind
            ];
            shellHook = ''
              export PATH="$PWD/target/debug:$PATH"
              echo "payment platform dev shell"
              echo "  cargo build --workspace    # build the four services"
              echo "  process-compose up         # start the stack on http://localhost:8000"
              echo "  ./scripts/test             # fmt, clippy and every test"
            '';
          };

          checks = servicePackages // {
            # The end-to-end suite (boots process-compose.yaml's processes
            # itself) and the shared runtime's tests.
            workspace-tests = mkWorkspaceCheck "workspace-tests" {
              cargoBuildFlags = [ "--workspace" ];
              cargoTestFlags = [
                "-p"
                "e2e"
                "-p"
                "platform"
              ];
              # The dashboard's browser tests need Chromium and Playwright
              # from npm, and schema fuzzing a pinned schemathesis from PyPI;
              # the build sandbox can fetch neither. The source-set test
              # copies the git checkout this source has no .git of (and this
              # source is that set). CI runs them all; tests/tests/nix_flake.rs
              # checks that the rest can run here. Every stack runs under
              # process-compose (the suite accepts this pin's version).
              checkFlags = [
                "--skip"
                "dashboard_"
                "--skip"
                "conform_to_their_schemas"
                "--skip"
                "the_nix_source_set_builds"
              ];
              nativeCheckInputs = [
                pkgs.redis
                pkgs.caddy
                pkgs.process-compose
                pkgs.httpie
                pkgs.jq
                pkgs.curl
                pkgs.tmux
              ];
              installPhase = "touch $out";
            };

            clippy = mkWorkspaceCheck "clippy" {
              auditable = false;
              nativeBuildInputs = [ pkgs.clippy ];
              buildPhase = "cargo clippy --offline --workspace --all-targets -- -D warnings";
              doCheck = false;
              installPhase = "touch $out";
            };

            rustfmt =
              pkgs.runCommand "rustfmt-check"
                {
                  nativeBuildInputs = [
                    pkgs.cargo
                    pkgs.rustfmt
                  ];
                }
                ''
                  cp -r ${src} source && chmod -R u+w source && cd source
                  cargo fmt --all --check
                  touch $out
                '';

            caddyfile =
              pkgs.runCommand "caddyfile-check"
                {
                  nativeBuildInputs = [ pkgs.caddy ];
                }
                ''
                  export HOME=$TMPDIR XDG_CONFIG_HOME=$TMPDIR XDG_DATA_HOME=$TMPDIR
                  caddy validate --adapter caddyfile --config ${./caddy/Caddyfile}
                  caddy fmt ${./caddy/Caddyfile} | diff -u ${./caddy/Caddyfile} -
                  touch $out
                '';

            # process-compose itself, headless, on the real yaml, plus one
            # test process that waits for the stack and runs the README
            # walkthrough through the gateway; its exit ends the run.
            process-compose =
              pkgs.runCommand "process-compose-walkthrough"
                {
                  nativeBuildInputs = (lib.attrValues servicePackages) ++ [
                    pkgs.process-compose
                    pkgs.redis
                    pkgs.caddy
                    pkgs.httpie
                    pkgs.jq
                  ];
                  __darwinAllowLocalNetworking = true;
                }
                ''
                  export HOME=$TMPDIR
                  cp -r ${src} source && chmod -R u+w source && cd source
                  export PLATFORM_DATA_DIR=$TMPDIR/data
                  # exit_on_end: process-compose exits with the walkthrough's
                  # status; exit_on_skipped: with 1 at once when a dependency
                  # never becomes healthy (process-compose's own keys).
                  cat > walkthrough.yaml <<'YAML'
                  processes:
                    walkthrough:
                      command: "bash scripts/walkthrough"
                      availability:
                        exit_on_end: true
                        exit_on_skipped: true
                      depends_on:
                        gateway:
                          condition: process_healthy
                        psp-connector-0:
                          condition: process_healthy
                        psp-connector-1:
                          condition: process_healthy
                        psp-a:
                          condition: process_healthy
                        psp-b:
                          condition: process_healthy
                  YAML
                  PC_PORT_NUM=18080 timeout 300 process-compose up -t=false \
                    --config process-compose.yaml --config walkthrough.yaml
                  touch $out
                '';
          };

          formatter = pkgs.nixfmt-tree;
        };

      all = forAllSystems perSystem;
    in
    {
      packages = lib.mapAttrs (_: s: s.packages) all;
      apps = lib.mapAttrs (_: s: s.apps) all;
      devShells = lib.mapAttrs (_: s: s.devShells) all;
      checks = lib.mapAttrs (_: s: s.checks) all;
      formatter = lib.mapAttrs (_: s: s.formatter) all;

      nixosModules.default = import ./nix/module.nix { inherit self; };
    };
}
