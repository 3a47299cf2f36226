#!/usr/bin/env bash
# Usage (sourced by a script after it has given every option variable its default):
#     . local/parse_options.sh
#
# Turns the calling script's "--name value" and "--name=value" arguments into
# assignments of the shell variable "name". A dash in the name counts as an underscore,
# so --stop-stage 12 and --stop_stage 12 both set ${stop_stage}. Only variables that
# already exist may be set, and only lower-case names: a typo such as --stop_stag fails
# here instead of being silently ignored, and no option can overwrite PATH or HOME.
# --help (or -h) prints ${help_message} and exits. Parsing stops at the first argument
# that does not start with "--"; what is left stays in the caller's "$@".
#
# Sourcing without arguments makes this file share the caller's positional parameters,
# which is how the "shift"s below consume the options in the caller.

while [ $# -gt 0 ]; do
    case $1 in
        -h | --help)
            echo "${help_message:-No help available.}"
            exit 0
            ;;
        --*=*)
            _opt_name=${1%%=*}
            _opt_value=${1#*=}
            shift
            ;;
        --*)
            if [ $# -lt 2 ]; then
                echo "$0: option $1 needs a value" >&2
                exit 1
            fi
            _opt_name=$1
            _opt_value=$2
            shift 2
            ;;
        *)
            break
            ;;
    esac
    _opt_var=${_opt_name#--}
    _opt_var=${_opt_var//-/_}
    if ! [[ ${_opt_var} =~ ^[a-z][a-z0-9_]*$ ]] || [ -z "${!_opt_var+set}" ]; then
        echo "$0: unknown option ${_opt_name} (see $0 --help)" >&2
        exit 1
    fi
    printf -v "${_opt_var}" '%s' "${_opt_value}"
done
unset _opt_name _opt_value _opt_var
