# Renders `vagrant ssh-config` output with Vagrant 2.3.4's own template (templates/commands/ssh_config/config.erb)
# and the ssh_info each provider returns, the way plugins/commands/ssh_config/command.rb prints it.
# Usage: ruby render-ssh-config.rb PROVIDER NAME:HOST:PORT...  (how ssh-config.*.txt were made)
$LOAD_PATH.unshift "/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/lib"
require "erb"
tpl = File.read("/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/templates/commands/ssh_config/config.erb")
provider, *machines = ARGV
out = ""
machines.each do |m|
  name, host, port = m.split(":")
  b = binding
  host_key = name; ssh_host = host; ssh_port = port.to_i; ssh_user = "vagrant"; keys_only = true
  verify_host_key = :never; log_level = nil; forward_agent = false; forward_x11 = false; proxy_command = nil; config = nil
  private_key_path = ["/home/operator/src/kiln/vagrant/.vagrant/machines/#{name}/#{provider}/private_key"]
  # `vagrant ssh-config` prints each rendered block, then an empty line
  out << ERB.new(tpl, trim_mode: "-").result(b) << "\n"
end
print out
