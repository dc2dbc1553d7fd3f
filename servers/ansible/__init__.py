"""``chiffon-ansible``: find the playbook a request means in the user's Ansible repo, plan it with a check-mode
diff, and run what a human approved.
"""
